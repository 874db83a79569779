"""dist container (= containers, c): create, ls, info, label, rm."""

from typing import Annotated

import typer

from dist_tool.commands import (
    DefaultLsGroup,
    FiltersArg,
    JsonOpt,
    ProgressOpt,
    QuietOpt,
    report_collection,
    session,
)

app = typer.Typer(cls=DefaultLsGroup, no_args_is_help=False,
                  help="Manage containers: metadata that pins an image's spec and root filesystem.")


# container create's options; `dist run` (commands/tasks.py) takes the same ones.
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE (repeatable).")]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")]
CwdOpt = Annotated[str | None, typer.Option("--cwd", help="Working directory.")]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="UID[:GID] or NAME[:GROUP].")]
MountOpt = Annotated[list[str] | None, typer.Option(
    "--mount", help="type=bind,src=S,dst=D[,options=ro:rbind] (repeatable).")]
NetHostOpt = Annotated[bool, typer.Option("--net-host", help="Share the host's network.")]
ReadOnlyOpt = Annotated[bool, typer.Option("--read-only", help="Read-only root filesystem.")]
TtyOpt = Annotated[bool, typer.Option("--tty", "-t", help="Allocate a terminal.")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help="Runtime name.")]
EntrypointOpt = Annotated[str | None, typer.Option("--entrypoint", help="Replace the Entrypoint ('' clears).")]


def create_options(args, label, env, cwd, user, mount, net_host, read_only, tty, runtime, entrypoint):
    """The parsed create options as ``containers.CreateOptions`` (validated by ``create``)."""
    from dist_tool import containers

    return containers.CreateOptions(labels=label or (), env=env or (), cwd=cwd, user=user, mounts=mount or (),
                                    net_host=net_host, read_only=read_only, tty=tty, runtime=runtime,
                                    entrypoint=entrypoint, args=tuple(args or ()))


def _columns():
    from dist_tool.render import Col, labels_text, stamp

    return (Col("ID", "id"), Col("IMAGE", "image"), Col("RUNTIME", "runtime.name"),
            Col("LABELS", "labels", fmt=labels_text), Col("CREATED", "createdAt", fmt=stamp))


@app.command("create")
def create(ctx: typer.Context,
           image: Annotated[str, typer.Argument(help="Image name.")],
           container_id: Annotated[str, typer.Argument(metavar="ID", help="Container ID.")],
           args: Annotated[list[str] | None, typer.Argument(metavar="[-- ARG...]",
                                                            help="Replace the image's Cmd.")] = None,
           label: LabelOpt = None, env: EnvOpt = None, cwd: CwdOpt = None, user: UserOpt = None,
           mount: MountOpt = None, net_host: NetHostOpt = False, read_only: ReadOnlyOpt = False,
           tty: TtyOpt = False, runtime: RuntimeOpt = "io.containerd.runc.v2",
           entrypoint: EntrypointOpt = None, progress: ProgressOpt = "auto") -> None:
    """Create a container from IMAGE: spec from its config with these overrides, rootfs snapshot on its layers."""
    from dist_tool import containers
    from dist_tool.render import Progress

    s = session(ctx)
    options = create_options(args, label, env, cwd, user, mount, net_host, read_only, tty, runtime, entrypoint)
    with Progress(progress) as bar:  # the image's layers are unpacked here when they are not yet
        container = containers.create(s, image, container_id, options, progress=bar)
    s.render.line(container.id)


@app.command("ls")
def ls(ctx: typer.Context,
       filters: FiltersArg = None,
       json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List containers: ID, IMAGE, RUNTIME, LABELS, CREATED."""
    s = session(ctx)
    found = s.containers.list(*(filters or ()))
    s.render.records([c.to_json() for c in found], _columns(), as_json=json_, quiet=quiet, key="id")


@app.command("info")
def info(ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")],
         json_: JsonOpt = False) -> None:
    """The whole record, spec included."""
    from dist_tool.render import Col, labels_text, rfc3339
    from dist_tool.tasks import last_exit

    s = session(ctx)
    container = s.containers.get(container_id)
    record = {**container.to_json(full=True), "lastExit": last_exit(s, container)}
    if json_:
        s.render.json(record)
        return
    cols = (Col("ID", "id"), Col("IMAGE", "image"), Col("RUNTIME", "runtime.name"),
            Col("SNAPSHOT", "snapshotKey", fmt=lambda k: f"{record['snapshotter']}/{k}"),
            Col("LABELS", "labels", fmt=labels_text), Col("CREATED", "createdAt", fmt=rfc3339),
            Col("UPDATED", "updatedAt", fmt=rfc3339),
            Col("LAST EXIT", "lastExit", fmt=lambda e: f"{e['status']} at {rfc3339(e['exitedAt'])}" if e else "-"),
            Col("COMMAND", "spec.process.args", fmt=lambda a: " ".join(a or ()) or "-"))
    s.render.fields(record, cols)
    s.render.line("SPEC:")
    s.render.json(record["spec"])


@app.command("label")
def label(ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")],
          labels: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE; KEY= removes.")] = None,
          json_: JsonOpt = False) -> None:
    """Set or remove labels; prints the resulting labels."""
    from dist_tool import containers

    s = session(ctx)
    result = containers.label(s, container_id, labels or [])
    s.render.labels(result, json_)


@app.command("rm")
def rm(ctx: typer.Context, container_ids: Annotated[list[str], typer.Argument(metavar="ID...")],
       force: Annotated[bool, typer.Option("-f", "--force", help="Kill a live task first; a missing ID is no error.")]
       = False) -> None:
    """Remove containers and their snapshots; collect what only they kept."""
    from dist_tool import containers

    s = session(ctx)
    removed, result, error = containers.remove(s, container_ids, force=force)
    s.render.lines(removed)
    report_collection(s, result)
    if error is not None:
        raise error
