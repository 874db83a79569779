"""dist snapshot: ls, info, usage, tree, rm, prepare, view, commit, mounts."""

from __future__ import annotations

from typing import Annotated

import typer

from dist_tool.commands import DefaultLsGroup, JsonOpt, QuietOpt, each, session

app = typer.Typer(cls=DefaultLsGroup, no_args_is_help=False,
                  help="Manage snapshots: unpacked layers (committed, keyed by chain ID) and writable trees.")

LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE, repeatable.")]


def _columns():
    from dist_tool.render import Col, stamp

    return (Col("KEY", "key"), Col("PARENT", "parent"), Col("KIND", "kind"), Col("CREATED", "createdAt", fmt=stamp))


@app.command("ls")
def ls(ctx: typer.Context,
       filters: Annotated[list[str] | None, typer.Argument(help="Filters, containerd syntax (key, parent, kind, "
                                                                "labels).")] = None,
       json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List snapshots: KEY, PARENT, KIND (active, view, committed)."""
    s = session(ctx)
    infos = s.snapshotter.list(*(filters or ()))
    s.render.records([i.to_json() for i in infos], _columns(), as_json=json_, quiet=quiet, key="key")


@app.command("info")
def info(ctx: typer.Context, key: str, json_: JsonOpt = False) -> None:
    """Show one snapshot's record."""
    from dist_tool.render import Col, labels_text, rfc3339

    s = session(ctx)
    record = s.snapshotter.stat(key).to_json()
    s.render.fields(record, [Col("Key", "key"), Col("Parent", "parent"), Col("Kind", "kind"),
                             Col("Labels", "labels", fmt=labels_text), Col("Created", "createdAt", fmt=rfc3339),
                             Col("Updated", "updatedAt", fmt=rfc3339)], as_json=json_)


@app.command("usage")
def usage(ctx: typer.Context, keys: Annotated[list[str] | None, typer.Argument(help="Snapshot keys (default: all).")]
          = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Disk usage (SIZE) and INODES of each snapshot's own directory; a missing key does not hide the others."""
    from dist_tool.errors import keep_going
    from dist_tool.render import Col, iec

    s = session(ctx)
    sn = s.snapshotter
    records: list[dict] = []
    error = keep_going(keys or [i.key for i in sn.list()],
                       lambda key: records.append({"key": key, **sn.usage(key).to_json()}))
    if records or error is None:  # a failure with nothing to show prints nothing (no bare header, no [])
        s.render.records(records, [Col("KEY", "key"), Col("SIZE", "size", fmt=iec), Col("INODES", "inodes")],
                         as_json=json_, quiet=quiet, key="key")
    if error is not None:
        raise error


@app.command("tree")
def tree(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """The parent chains as a tree (each base snapshot at the left); -q: the keys in tree order."""
    s = session(ctx)
    infos = s.snapshotter.list()
    nodes = {i.key: {"key": i.key, "kind": i.kind, "children": []} for i in infos}
    roots = []
    for i in infos:
        (nodes[i.parent]["children"] if i.parent in nodes else roots).append(nodes[i.key])
    if json_:
        s.render.json(roots)
        return
    for root in roots:
        s.render.tree(root, lambda n: n["key"] if n["kind"] == "committed" or quiet else f"{n['key']} ({n['kind']})",
                      flat=quiet)


@app.command("rm")
def rm(ctx: typer.Context, keys: Annotated[list[str], typer.Argument(help="Snapshot keys.")]) -> None:
    """Remove snapshots; exit 4 while a child snapshot or a container uses one (the others still go)."""
    s = session(ctx)
    each(keys, s.snapshotter.remove)


def _labels(pairs: list[str] | None, *, removals: bool = False) -> dict[str, str]:
    """``--label`` pairs plus a gc.root label: snapshots made by hand stay until removed by hand
    (garbage collection treats them as roots).
    With ``removals``, ``KEY=`` stays in (it removes KEY from labels being updated)."""
    import time

    from dist_tool import validate
    from dist_tool.gc import GC_ROOT_LABEL
    from dist_tool.render import rfc3339

    labels = {k: v for k, v in validate.label_args(pairs or []).items() if v or removals}
    labels.setdefault(GC_ROOT_LABEL, rfc3339(time.time()) or "now")
    return labels


@app.command("prepare")
def prepare(ctx: typer.Context, key: str,
            parent: Annotated[str | None, typer.Argument(help="A committed snapshot.")] = None,
            label: LabelOpt = None) -> None:
    """Create an active (writable) snapshot on PARENT; it stays until `snapshot rm`."""
    session(ctx).snapshotter.prepare(key, parent, _labels(label))


@app.command("view")
def view(ctx: typer.Context, key: str, parent: str, label: LabelOpt = None) -> None:
    """Create a read-only view of the committed snapshot PARENT; it stays until `snapshot rm`."""
    session(ctx).snapshotter.view(key, parent, _labels(label))


@app.command("commit")
def commit(ctx: typer.Context, name: str, key: str, label: LabelOpt = None) -> None:
    """Commit the active snapshot KEY as NAME (KEY is gone afterwards)."""
    session(ctx).snapshotter.commit(name, key, _labels(label, removals=True))


@app.command("mounts")
def mounts(ctx: typer.Context, target: str, key: str, json_: JsonOpt = False) -> None:
    """Print the mount command(s) that show snapshot KEY at TARGET."""
    import shlex

    s = session(ctx)
    found = s.snapshotter.mounts(key)
    if json_:
        s.render.json([m.to_json() for m in found])
        return
    s.render.lines(f"mount -t {m.type} {shlex.quote(m.source)} {shlex.quote(target)}"
                   + (f" -o {shlex.quote(','.join(m.options))}" if m.options else "") for m in found)
