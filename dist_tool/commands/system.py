"""dist gc, info, namespaces, leases."""


from typing import Annotated

import typer

from dist_tool.commands import DefaultLsGroup, FiltersArg, JsonOpt, QuietOpt, each, report_unreadable, session

gc_app = typer.Typer(help="Garbage collection.")
info_app = typer.Typer(help="Store information.")
namespaces_app = typer.Typer(cls=DefaultLsGroup, help="Manage namespaces.")
leases_app = typer.Typer(cls=DefaultLsGroup, help="Manage leases.")


@gc_app.command("gc")
def gc(ctx: typer.Context,
       items: Annotated[list[str] | None, typer.Argument(help="With --explain: digests or snapshot keys.")] = None,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, remove nothing.")] = False,
       explain: Annotated[bool, typer.Option("--explain", help="Why is each DIGEST or SNAPSHOT kept?")] = False,
       json_: JsonOpt = False) -> None:
    """Remove what no image, container or lease references; or explain what keeps a blob."""
    from dist_tool import gc as collector
    from dist_tool import validate
    from dist_tool.errors import InvalidArgument, NotFound
    from dist_tool.render import iec

    s = session(ctx)
    if explain:
        if not items:
            raise InvalidArgument("gc --explain", "", "name at least one digest or snapshot key")
        # A digest-shaped argument must be a well-formed digest; anything else names a snapshot.
        reports, missing = collector.explain(s.meta, s.content, [validate.digest(i) if i.startswith("sha") and ":" in i
                                                                 else i for i in items])
        _explanations(s, reports, json_)
        if missing:
            raise NotFound("blob or snapshot", missing[0], "not found")
        return
    if items:
        raise InvalidArgument("gc", items[0], "unexpected argument (did you mean --explain?)")
    result = s.collect_garbage(dry_run=dry_run)
    if json_:
        s.render.json(result.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    for digest, size in result.blobs:
        s.render.line(f"{verb} blob {digest} ({iec(size)})")
    for ns, lease_id in result.leases:
        s.render.line(f"{verb} expired lease {ns}/{lease_id}")
    for ref in result.ingests:
        s.render.line(f"{verb} abandoned ingest {ref}")
    for _, ns, snapshotter, key in result.snapshots:
        s.render.line(f"{verb} snapshot {key} ({snapshotter}, namespace {ns})")
    for directory in result.directories:
        s.render.line(f"{verb} leftover directory {directory}")
    report_unreadable(s, result.unreadable)
    from boltons.strutils import cardinalize

    def counted(word: str, items: list) -> str:
        return f"{len(items)} {cardinalize(word, len(items))}"

    also = [counted("snapshot", result.snapshots)] if result.snapshots else []
    also += [counted("directory", result.directories)] if result.directories else []
    s.render.line(f"{'would free' if dry_run else 'freed'} {iec(result.bytes_freed)} "
                  f"in {counted('blob', result.blobs)}" + (f" (and {', '.join(also)})" if also else ""))


def _explanations(s, reports: list[dict], json_: bool) -> None:
    if json_:
        s.render.json(reports)
        return
    for report in reports:
        what = report.get("digest") or f"snapshot {report['snapshot']} ({report['snapshotter']}, " \
                                       f"namespace {report['namespace']})"
        if not report["kept"]:
            s.render.line(f"{what}: nothing keeps it; the next gc removes it")
            continue
        s.render.line(f"{what} is kept by:")
        for depth, step in enumerate(report["chain"]):
            s.render.line(f"{'  ' * (depth + 1)}{_step_text(step)}")


def _step_text(step: dict) -> str:
    if step["kind"] == "image":
        return f"image {step['name']} (namespace {step['namespace']})"
    if step["kind"] == "lease":
        return f"lease {step['id']} (namespace {step['namespace']})"
    if step["kind"] == "container":
        return f"container {step['id']} (namespace {step['namespace']})"
    if step["kind"] == "snapshot":
        root = f", {step['root']}" if "root" in step else ""
        return f"snapshot {step['key']} ({step['snapshotter']}, namespace {step['namespace']}{root})"
    if "digest" in step:
        return f"{step['kind']} {step['digest']}" + (f" ({step['root']})" if "root" in step else "")
    return f"{step['kind']} {step.get('id', '')}"


@info_app.command("info")
def info(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Version, root, state, namespace, snapshotter, runtime and counts."""
    from dist_tool import system

    s = session(ctx)
    doc = system.info(s)
    if json_:
        s.render.json(doc)
        return
    s.render.lines([
        f"version:     {doc['version']}", f"root:        {doc['root']}", f"state:       {doc['state']}",
        f"namespace:   {doc['namespace']}", f"snapshotter: {doc['snapshotter']}",
        f"runtime:     {doc['runtime']['path'] or '-'} ({doc['runtime']['version'] or 'not found'})",
        "counts:      " + ", ".join(f"{k} {v}" for k, v in doc["counts"].items())])


# ---------------------------------------------------------------- namespaces


@namespaces_app.command("ls")
def namespaces_ls(ctx: typer.Context, filters: FiltersArg = None,
                  json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List namespaces."""
    from dist_tool.render import Col, labels_text

    s = session(ctx)
    s.render.records([n.to_json() for n in s.namespaces.list(*(filters or ()))],
                     (Col("NAME", "name"), Col("LABELS", "labels", fmt=labels_text)),
                     as_json=json_, quiet=quiet)


@namespaces_app.command("create")
def namespaces_create(ctx: typer.Context, name: str,
                      labels: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE")] = None) -> None:
    """Create a namespace (namespaces are also created on first write)."""
    from dist_tool import validate
    from dist_tool.store.api import Namespace

    s = session(ctx)
    parsed = validate.apply_labels({}, validate.label_args(labels or []))
    s.render.line(s.namespaces.create(Namespace(validate.identifier("namespace", name), parsed)).name)


@namespaces_app.command("rm")
def namespaces_rm(ctx: typer.Context, names: list[str]) -> None:
    """Remove empty namespaces (exit 4 while one holds anything; the others still go)."""
    from dist_tool import validate

    names = [validate.identifier("namespace", n) for n in names]  # a malformed one: exit 2 before any work
    s = session(ctx)
    each(names, s.namespaces.delete, s.render.line)


@namespaces_app.command("label")
def namespaces_label(ctx: typer.Context, name: str,
                     labels: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE; KEY= removes.")] = None,
                     json_: JsonOpt = False) -> None:
    """Set or remove a namespace's labels; prints the resulting labels."""
    from dist_tool import validate
    from dist_tool.store.api import Namespace

    name = validate.identifier("namespace", name)
    updates = validate.label_args(labels or [])
    s = session(ctx)
    if not updates:
        result = s.namespaces.get(name)
    else:
        # One field path per key, merged by the store in its transaction: concurrent labels of
        # other keys are kept (a read here, then a write of the whole map, lost them).
        result = s.namespaces.update(Namespace(name, validate.apply_labels({}, updates)),
                                     *(f"labels.{k}" for k in updates))
    s.render.labels(result.labels, json_)


# ---------------------------------------------------------------- leases


@leases_app.command("ls")
def leases_ls(ctx: typer.Context, filters: FiltersArg = None,
              json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List leases: ID, CREATED, EXPIRES, OWNER, LABELS."""
    from dist_tool.render import Col, labels_text, stamp

    s = session(ctx)
    cols = (Col("ID", "id"), Col("CREATED", "createdAt", fmt=stamp),
            Col("EXPIRES", "expiresAt", fmt=stamp), Col("OWNER", "ownerPid"),
            Col("LABELS", "labels", fmt=labels_text))
    s.render.records([x.to_json() for x in s.leases.list(*(filters or ()))], cols, as_json=json_, quiet=quiet,
                     key="id")


@leases_app.command("create")
def leases_create(ctx: typer.Context,
                  lease_id: Annotated[str | None, typer.Option("--id", help="Lease ID (default: generated).")]
                  = None,
                  expires: Annotated[str | None, typer.Option("--expires", help="Duration: 90s, 30m, 24h.")]
                  = None,
                  labels: Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE")] = None) -> None:
    """Create a lease; what it references is kept from garbage collection."""
    import secrets
    import time

    from dist_tool import validate
    from dist_tool.store.api import Lease

    s = session(ctx)
    ident = validate.identifier("lease id", lease_id) if lease_id else f"lease-{secrets.token_hex(6)}"
    expires_at = time.time() + validate.duration(expires) if expires else None
    parsed = validate.apply_labels({}, validate.label_args(labels or []))
    s.render.line(s.leases.create(Lease(ident, parsed, expires_at=expires_at)).id)


@leases_app.command("rm")
def leases_rm(ctx: typer.Context, ids: list[str]) -> None:
    """Remove leases (what they kept is collected by the next gc); a missing one does not stop the others."""
    from dist_tool import validate

    ids = [validate.identifier("lease id", i) for i in ids]  # a malformed one: exit 2 before any work
    s = session(ctx)
    each(ids, s.leases.delete, s.render.line)


serve_app = typer.Typer(help="Serve the store to `dist --address` clients.")


@serve_app.command("serve")
def serve(ctx: typer.Context,
          address: Annotated[str | None, typer.Option("--address", help="unix:///PATH or tcp://127.0.0.1:PORT")]
          = None,
          token_file: Annotated[str | None, typer.Option(
              "--token-file", help="Clients must send this token (required for tcp://; not readable by others).")]
          = None) -> None:
    """Serve images, content, containers and leases over HTTP/JSON until stopped."""
    import signal

    from dist_tool.errors import InvalidArgument
    from dist_tool.remote import server
    from dist_tool.session import Session

    s = session(ctx)
    where = address or s.address
    if not where:
        raise InvalidArgument("dist serve", "", "needs --address unix:///PATH or tcp://127.0.0.1:PORT")

    def make_session(namespace: str) -> Session:  # one per client connection and namespace
        return Session(root=s.root, state=s.state, namespace=namespace, snapshotter_name=s.snapshotter_name,
                       debug=s.debug)

    s.address = None  # the server opens the store itself, whatever --address/DIST_ADDRESS said
    s.meta  # noqa: B018 - create and migrate the store before the first client
    token = server.read_token(token_file) if token_file else None
    httpd = server.make_server(where, make_session, token=token, debug=s.debug)

    signals: list[int] = []  # a first SIGTERM or SIGINT stops the server, a second cuts the wait short
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `dist serve &` in a script ignores SIGINT
            signal.signal(signum, lambda signum, frame: signals.append(signum))
    s.render.err.write(f"dist serve: listening on {where}\n")
    s.render.err.flush()
    try:
        httpd.serve_until(lambda: bool(signals))
    finally:
        cut = httpd.stop(cut_short=lambda: len(signals) > 1)
    if cut:
        s.render.err.write(f"dist serve: stopped with {cut} request(s) in progress cut off\n")
