"""dist content: ls, get, ingest, active, rm, label, verify."""


from typing import Annotated

import typer

from dist_tool.commands import DefaultLsGroup, FiltersArg, JsonOpt, QuietOpt, each, session
from dist_tool.errors import DataError, InvalidArgument, NotFound

app = typer.Typer(cls=DefaultLsGroup, help="Manage content blobs (shared by all namespaces).")


@app.command("ls")
def ls(ctx: typer.Context, filters: FiltersArg = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List blobs: DIGEST, SIZE, CREATED, LABELS."""
    from dist_tool.render import Col, iec, labels_text, stamp

    s = session(ctx)
    cols = (Col("DIGEST", "digest"), Col("SIZE", "size", fmt=iec), Col("CREATED", "createdAt", fmt=stamp),
            Col("LABELS", "labels", fmt=labels_text))
    found = s.content.list(*(filters or ()))
    s.render.records([i.to_json() for i in found], cols, as_json=json_, quiet=quiet, key="digest")


@app.command("get")
def get(ctx: typer.Context, digest: Annotated[str, typer.Argument(help="sha256:<hex>")]) -> None:
    """Write a blob to stdout (exit 1 if its file is not as long as its record)."""
    import sys

    from dist_tool import validate

    s = session(ctx)
    digest = validate.digest(digest)
    expected = s.content.info(digest).size
    written = 0
    with s.content.open_blob(digest) as f:
        sys.stdout.flush()
        while chunk := f.read(1 << 20):
            sys.stdout.buffer.write(chunk)
            written += len(chunk)
        sys.stdout.buffer.flush()
    if written != expected:  # damaged on disk: the bytes are out, the status must say so
        raise DataError("blob", digest, f"its file holds {written} bytes, its record {expected} "
                        "(see dist content verify)")


@app.command("ingest")
def ingest(ctx: typer.Context,
           ref: Annotated[str, typer.Option("--ref", help="Names the ingest; the same ref resumes it.")],
           expected_digest: Annotated[str | None, typer.Option("--expected-digest", help="Refuse other content.")]
           = None,
           expected_size: Annotated[str | None, typer.Option("--expected-size", metavar="BYTES",
                                                              help="Refuse other sizes.")] = None,
           labels: Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE")] = None) -> None:
    """Read stdin into the store and print the digest; a mismatch stores nothing."""
    import sys

    from dist_tool import validate

    digest = validate.digest(expected_digest) if expected_digest is not None else None  # '' is malformed
    size = None
    if expected_size is not None:
        size = validate.decimal(expected_size)  # ASCII digits: int() would take "١٢", " 5" and "1_0"
        if size is None:
            raise InvalidArgument("--expected-size", expected_size, "must be a number of bytes")
    parsed = validate.label_args(labels or [])
    s = session(ctx)
    s.render.line(s.content.ingest(ref, sys.stdin.buffer, size=size, digest=digest, labels=parsed))


@app.command("active")
def active(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Ingests in progress (or interrupted): REF, SIZE so far, STARTED."""
    from dist_tool.render import Col, iec, stamp

    s = session(ctx)
    cols = (Col("REF", "ref"), Col("SIZE", "offset", fmt=iec), Col("EXPECTED", "expected"),
            Col("STARTED", "startedAt", fmt=stamp), Col("WRITER", "active", fmt=lambda a: "live" if a else "gone"))
    s.render.records([i.to_json() for i in s.content.ingests()], cols, as_json=json_, quiet=quiet, key="ref")


@app.command("rm")
def rm(ctx: typer.Context, digests: Annotated[list[str], typer.Argument(help="Blob digests.")]) -> None:
    """Remove blobs (an image that references one becomes incomplete)."""
    from dist_tool import validate

    s = session(ctx)
    each(digests, lambda digest: s.content.delete(validate.digest(digest)), s.render.line)


@app.command("label")
def label(ctx: typer.Context, digest: Annotated[str, typer.Argument(help="Blob digest.")],
          labels: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE; KEY= removes.")] = None,
          json_: JsonOpt = False) -> None:
    """Set or remove a blob's labels; prints the resulting labels."""
    from dist_tool import validate

    s = session(ctx)
    info = s.content.update_labels(validate.digest(digest), validate.label_args(labels or []))
    s.render.labels(info.labels, json_)


@app.command("verify")
def verify(ctx: typer.Context,
           digests: Annotated[list[str] | None, typer.Argument(help="Blob digests (default: all).")] = None,
           json_: JsonOpt = False) -> None:
    """Re-hash blobs and report corrupt ones (exit 1 if any, else 3 if a digest is not stored)."""
    from dist_tool import validate
    from dist_tool.render import Col

    s = session(ctx)
    targets = [validate.digest(d) for d in digests] if digests else [i.digest for i in s.content.list()]
    results = []
    missing: NotFound | None = None
    for digest in targets:
        try:
            problem = s.content.verify(digest)
        except NotFound as e:  # as rmi A B: the others are still verified and shown
            missing = missing or e
            continue
        results.append({"digest": digest, "ok": problem is None, "problem": problem})
    s.render.records(results, (Col("DIGEST", "digest"), Col("STATUS", "ok", fmt=lambda ok: "ok" if ok else "CORRUPT"),
                               Col("PROBLEM", "problem")), as_json=json_)
    corrupt = [r for r in results if not r["ok"]]
    if corrupt:
        raise DataError("blob", corrupt[0]["digest"], f"corrupt: {corrupt[0]['problem']}"
                        + (f" (and {len(corrupt) - 1} more)" if len(corrupt) > 1 else ""))
    if missing is not None:
        raise missing
