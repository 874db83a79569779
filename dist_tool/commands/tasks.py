"""dist task (= tasks, t): start, ls, kill, wait, exec, ps, pause, resume, logs, rm; and dist run.

``run``, foreground ``task start``, ``task exec`` and ``task wait`` pass the
task's status through (``TaskExit``); their own failures are 125, 126 or 127
(``TaskFailed``), except usage errors (2) and a task that does not exist (3).
"""

from typing import Annotated

import typer

from dist_tool.commands import DefaultLsGroup, FiltersArg, JsonOpt, ProgressOpt, QuietOpt, session
from dist_tool.commands.containers import (
    CwdOpt,
    EntrypointOpt,
    EnvOpt,
    LabelOpt,
    MountOpt,
    NetHostOpt,
    ReadOnlyOpt,
    RuntimeOpt,
    TtyOpt,
    UserOpt,
    create_options,
)
from dist_tool.errors import DistError, InvalidArgument, NotFound, TaskExit, TaskFailed

app = typer.Typer(cls=DefaultLsGroup, no_args_is_help=False,
                  help="Manage tasks: the running side of containers, one shim each, no daemon.")
run_app = typer.Typer()

ContainerArg = Annotated[str, typer.Argument(metavar="CONTAINER", help="Container ID.")]
DetachOpt = Annotated[bool, typer.Option("-d", "--detach", help="Return once it runs; output to the task log.")]
LogOpt = Annotated[str | None, typer.Option("--log", help="Log file of a detached task.")]
NullIOOpt = Annotated[bool, typer.Option("--null-io", help="Stdio to /dev/null.")]


# What may leave a pass-through command without being its failure: dist's own errors (mapped
# below), a status passed through, a closed stdout reader, typer's exits.
_NOT_FAILURES = (DistError, TaskExit, BrokenPipeError, typer.Exit, typer.Abort)


class passthrough:  # noqa: N801 - used as ``with passthrough():``
    """For commands that pass a task's status through: their own failures exit 125 (SPEC), except
    usage errors (2), a runtime's 126/127, and (``task_missing_is_3``) a container with no task,
    or none at all (SPEC: exit 3 when the container never had a task)."""

    def __init__(self, task_missing_is_3: bool = True) -> None:
        self.task_missing_is_3 = task_missing_is_3

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, tb) -> bool:
        if isinstance(error, OSError) and not isinstance(error, _NOT_FAILURES):
            # An I/O error no layer below expected (a full disk, a path that is a file): worded as
            # every other command words it, with the status of dist's own failure.
            if error.filename and error.strerror:
                raise TaskFailed("file", str(error.filename), error.strerror) from error
            raise TaskFailed("I/O error", "", str(error)) from error
        if isinstance(error, Exception) and not isinstance(error, _NOT_FAILURES):
            # Not one of dist's errors (a bug): still dist's failure, so 125, not 1.
            raise TaskFailed("internal error", "", f"{error.__class__.__name__}: {error}") from error
        if error is None or not isinstance(error, DistError) or isinstance(error, TaskFailed | InvalidArgument):
            return False
        if isinstance(error, NotFound) and self.task_missing_is_3 and error.what in ("task", "container"):
            return False  # a container that does not exist has no task either
        raise TaskFailed(error.what, error.which, error.why) from None


def _log_needs_detach(log: str | None, detach: bool) -> None:
    """A foreground task's output goes to the caller's terminal: a --log there would be dropped."""
    if log is not None and not detach:
        raise InvalidArgument("--log", log, "is for a detached task (-d); a foreground one writes to the terminal")


def _columns():
    from dist_tool.render import Col, stamp

    return (Col("TASK", "id"), Col("PID", "pid"), Col("STATUS", "status"), Col("SHIM", "shimPid"),
            Col("STARTED", "startedAt", fmt=stamp))


@app.command("start")
def start(ctx: typer.Context, container_id: ContainerArg, detach: DetachOpt = False, log: LogOpt = None,
          null_io: NullIOOpt = False) -> None:
    """Start the container's task: attached (exits with its status), or detached with -d."""
    from dist_tool import tasks

    _log_needs_detach(log, detach)
    s = session(ctx)
    if detach:  # passes no status through: its failures keep their own codes (3, 4, 1)
        tasks.start_detached(s, container_id, log=log, null_io=null_io)
        return
    with passthrough(task_missing_is_3=False):
        status = tasks.start_foreground(s, container_id, null_io=null_io)
    raise TaskExit(status)


@app.command("ls")
def ls(ctx: typer.Context, filters: FiltersArg = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List tasks: TASK, PID, STATUS (created, running, paused)."""
    from dist_tool import tasks

    s = session(ctx)
    found = tasks.list_tasks(s, *(filters or ()))
    s.render.records([t.to_json() for t in found], _columns(), as_json=json_, quiet=quiet, key="id")


@app.command("kill")
def kill(ctx: typer.Context, container_id: ContainerArg,
         signal: Annotated[str, typer.Option("-s", "--signal", help="A signal name or number: SIGKILL, KILL, 9.")]
         = "SIGTERM",
         all_: Annotated[bool, typer.Option("--all", "-a", help="Every process of the task.")] = False,
         exec_id: Annotated[str | None, typer.Option("--exec-id", help="Signal this exec instead.")] = None) -> None:
    """Signal the task's init process (default SIGTERM)."""
    from dist_tool import tasks

    tasks.kill(session(ctx), container_id, tasks.parse_signal(signal), all_processes=all_, exec_id=exec_id)


@app.command("wait")
def wait(ctx: typer.Context, container_id: ContainerArg) -> None:
    """Block until the task exits; print its status and exit with it (lastExit after the exit)."""
    from dist_tool import tasks

    s = session(ctx)
    with passthrough():
        status = tasks.wait(s, container_id)
    s.render.line(str(status))
    raise TaskExit(status)


@app.command("exec")
def exec_(ctx: typer.Context, container_id: ContainerArg,
          exec_id: Annotated[str, typer.Option("--exec-id", help="ID of the new process (unique in the task).")],
          args: Annotated[list[str], typer.Argument(metavar="-- CMD...", help="The command.")],
          detach: DetachOpt = False,
          tty: Annotated[bool, typer.Option("-t", "--tty", help="Allocate a terminal.")] = False) -> None:
    """Run another process in the task; exits with its status unless -d."""
    from dist_tool import tasks
    from dist_tool.validate import identifier

    identifier("exec id", exec_id)  # containerd's rule for exec IDs too: a usage error, before anything runs
    s = session(ctx)
    with passthrough():
        if detach:
            tasks.exec_detached(s, container_id, exec_id, args, tty=tty)
            return
        status = tasks.exec_foreground(s, container_id, exec_id, args, tty=tty)
    raise TaskExit(status)


@app.command("ps")
def ps(ctx: typer.Context, container_id: ContainerArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """The task's processes: PID, COMMAND."""
    from dist_tool import tasks
    from dist_tool.render import Col

    s = session(ctx)
    s.render.records(tasks.ps(s, container_id), (Col("PID", "pid"), Col("COMMAND", "command")), as_json=json_,
                     quiet=quiet, key="pid")


@app.command("pause")
def pause(ctx: typer.Context, container_id: ContainerArg) -> None:
    """Freeze every process of the task."""
    from dist_tool import tasks

    tasks.pause(session(ctx), container_id)


@app.command("resume")
def resume(ctx: typer.Context, container_id: ContainerArg) -> None:
    """Thaw a paused task."""
    from dist_tool import tasks

    tasks.resume(session(ctx), container_id)


@app.command("logs")
def logs(ctx: typer.Context, container_id: ContainerArg,
         follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing until the task exits.")]
         = False) -> None:
    """Output of a detached task (the last detached run's, after it exited)."""
    import sys

    from dist_tool import tasks

    tasks.follow_log(session(ctx), container_id, sys.stdout.buffer, follow)


@app.command("rm")
def rm(ctx: typer.Context, container_id: ContainerArg,
       force: Annotated[bool, typer.Option("-f", "--force", help="Kill a running task first.")] = False) -> None:
    """Remove a created task; with -f, kill and remove a running one."""
    from dist_tool import tasks

    tasks.remove(session(ctx), container_id, force=force)


@run_app.command("run")
def run(ctx: typer.Context,
        image: Annotated[str, typer.Argument(help="Image name.")],
        container_id: Annotated[str, typer.Argument(metavar="ID", help="Container ID.")],
        args: Annotated[list[str] | None, typer.Argument(metavar="[-- ARG...]", help="Replace the image's Cmd.")]
        = None,
        rm: Annotated[bool, typer.Option("--rm", help="Delete the container after the task exits.")] = False,
        detach: DetachOpt = False, log: LogOpt = None, null_io: NullIOOpt = False,
        label: LabelOpt = None, env: EnvOpt = None, cwd: CwdOpt = None, user: UserOpt = None,
        mount: MountOpt = None, net_host: NetHostOpt = False, read_only: ReadOnlyOpt = False,
        tty: TtyOpt = False, runtime: RuntimeOpt = "io.containerd.runc.v2",
        entrypoint: EntrypointOpt = None, progress: ProgressOpt = "auto") -> None:
    """Create a container and start its task (container create options + task start)."""
    from dist_tool import tasks
    from dist_tool.render import Progress

    _log_needs_detach(log, detach)
    s = session(ctx)
    options = create_options(args, label, env, cwd, user, mount, net_host, read_only, tty, runtime, entrypoint)
    with passthrough(task_missing_is_3=False), Progress(progress) as bar:
        status = tasks.run(s, image, container_id, options, remove=rm, detach=detach, log=log, null_io=null_io,
                           progress=bar)
    if status is not None:
        raise TaskExit(status)
