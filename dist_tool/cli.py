"""The ``dist`` entry point: global options → Session, lazily loaded command groups, and
``main()``, the one place that turns errors into exit codes (SPEC "Exit status").

Command groups are registered by module path and imported only when invoked,
so ``dist images`` loads the images group alone (start-up is a benchmark).
"""


import importlib
import io
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dist_tool import __version__
from dist_tool.commands import LazySubcommandGroup, word_placeholders
from dist_tool.errors import DistError, TaskExit, Unavailable

# name → (module, attribute, one-line help). Attributes are typer apps.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "images": ("dist_tool.commands.images", "app", "Manage images: ls, rm, tag, label, inspect, check, import, export"),
    "rmi": ("dist_tool.commands.images", "rmi_app", "Remove images by name (= images rm)"),
    "pull": ("dist_tool.commands.registry", "pull_app", "Pull an image from a registry (= images pull)"),
    "push": ("dist_tool.commands.registry", "push_app", "Push an image to a registry (= images push)"),
    "content": ("dist_tool.commands.content", "app", "Manage content blobs"),
    "gc": ("dist_tool.commands.system", "gc_app", "Collect what nothing references; explain what keeps a blob"),
    "info": ("dist_tool.commands.system", "info_app", "Show the store, runtime and counts"),
    "namespaces": ("dist_tool.commands.system", "namespaces_app", "Manage namespaces"),
    "leases": ("dist_tool.commands.system", "leases_app", "Manage leases"),
    "serve": ("dist_tool.commands.system", "serve_app", "Serve the store to `dist --address` clients"),
    "container": ("dist_tool.commands.containers", "app", "Manage containers: create, ls, info, label, rm"),
    "snapshot": ("dist_tool.commands.snapshots", "app",
                 "Manage snapshots: ls, info, usage, tree, rm, prepare, view, commit, mounts"),
    "task": ("dist_tool.commands.tasks", "app",
             "Manage tasks: start, ls, kill, wait, exec, ps, pause, resume, logs, rm"),
    "run": ("dist_tool.commands.tasks", "run_app", "Create a container and start its task"),
}
ALIASES = {"image": "images", "i": "images", "namespace": "namespaces", "ns": "namespaces",
           "lease": "leases", "containers": "container", "c": "container", "snapshots": "snapshot",
           "tasks": "task", "t": "task"}


def load_command(name: str):
    """The click command for ``name`` (or an alias), importing its module now."""
    module_name, attribute, _ = COMMANDS[ALIASES.get(name, name)]
    app = getattr(importlib.import_module(module_name), attribute)
    app._add_completion = False  # a group is not a program of its own: no --install-completion
    if isinstance(app.info.cls, type) and issubclass(app.info.cls, LazySubcommandGroup):
        command = app.info.cls.from_typer(app)
    else:
        command = typer.main.get_command(app)
    command.name = name
    _conventional_help(command)
    return command


def root_command():
    """The click command of ``dist`` itself, its global options' placeholders included."""
    command = typer.main.get_command(app)
    word_placeholders(command)
    return command


def _conventional_help(command) -> None:
    """Help text is plain text (CONVENTIONS G9: markup off): ``[/variant]`` is not rich markup;
    placeholders are words (``word_placeholders``)."""
    command.rich_markup_mode = None
    word_placeholders(command)
    for sub in getattr(command, "commands", {}).values():
        _conventional_help(sub)


class _BrokenPipe(Exception):
    """A BrokenPipeError carried past typer, which would turn it into a bare ``exit 1``."""


class _Stdout(io.FileIO):
    """fd 1 under the program's sys.stdout. Every write to standard output (tables, JSON, -q lists,
    export -, content get, task logs, help, run()'s final flush) ends here, so a failed one is
    said to be stdout's here: the bare OSError ("I/O error: [Errno 28] ...") named nothing, and a
    full disk under the store read the same. A closed reader stays a BrokenPipeError (main's case)."""

    failed = False  # whether a write has failed: run() says so once

    def write(self, data) -> int | None:
        if not memoryview(data).nbytes:
            # click probes stdout with write(""), which reaches the fd when unbuffered
            # (PYTHONUNBUFFERED), fails on /dev/full and is swallowed: nothing to write.
            return 0
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            self.failed = True
            raise Unavailable("stdout", "", e.strerror or str(e)) from e


def _stdout_that_names_itself() -> _Stdout | None:
    """sys.stdout rebuilt over a ``_Stdout``, as buffered as Python made it (PYTHONUNBUFFERED)."""
    stdout = sys.stdout
    try:
        if stdout.fileno() != 1:
            return None
    except (AttributeError, OSError, ValueError):  # not a file
        return None
    stdout.flush()
    raw = _Stdout(1, "w", closefd=False)
    raw.name = "<stdout>"
    buffer = raw if isinstance(stdout.buffer, io.RawIOBase) else io.BufferedWriter(raw)
    sys.stdout = io.TextIOWrapper(buffer, encoding=stdout.encoding, errors=stdout.errors, newline="\n",
                                  line_buffering=stdout.line_buffering, write_through=stdout.write_through)
    return raw


class LazyGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise _BrokenPipe(e) from e

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str):
        if ALIASES.get(cmd_name, cmd_name) not in COMMANDS:
            return None
        return load_command(cmd_name)


app = typer.Typer(cls=LazyGroup, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="dist: a daemonless container tool (images, content, snapshots, containers, tasks).")


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dist {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    root: Annotated[str | None, typer.Option("--root", envvar="DIST_ROOT", help="Persistent store.")] = None,
    state: Annotated[str | None, typer.Option("--state", envvar="DIST_STATE", help="Runtime state.")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace", envvar="DIST_NAMESPACE",
                                           help="Namespace of images, containers, tasks, snapshots, leases.")]
    = "default",
    snapshotter: Annotated[str | None, typer.Option("--snapshotter", envvar="DIST_SNAPSHOTTER",
                                                    help="overlayfs or native.")] = None,
    address: Annotated[str | None, typer.Option("--address", envvar="DIST_ADDRESS",
                                                help="Use the store served by `dist serve`.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and debug log on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    from dist_tool.session import Session, default_root, default_state
    from dist_tool.validate import identifier, utf8

    identifier("namespace", namespace)
    for option, value in (("root", root), ("state", state)):
        # Mount options, runc's config.json and the shim's socket hold these paths as text.
        utf8(f"--{option}", value or "")
        # An empty DIST_ROOT means the default, as an unset one; an empty --root "$R" is a script's
        # unset variable, and taking the system store for it would act on the wrong images.
        if value == "" and getattr(ctx.get_parameter_source(option), "name", "") == "COMMANDLINE":
            from dist_tool.errors import InvalidArgument

            raise InvalidArgument(f"--{option}", "", "must not be empty")
    if address and ctx.invoked_subcommand != "serve":  # serve ignores it: it opens the store itself
        # A malformed one is a usage error whatever the command, served or not.
        from dist_tool.remote.wire import parse_address

        parse_address(address)
    ctx.obj = Session(root=root or default_root(), state=state or default_state(), namespace=namespace,
                      snapshotter_name=snapshotter, address=address, debug=debug)
    ctx.call_on_close(ctx.obj.close)


def _wants_debug(argv: list[str]) -> bool:
    return "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns SPEC's exit status. Nothing below this exits the process."""
    terminated = _stop_on_sigterm_as_on_ctrl_c()
    status = _run_command(list(sys.argv[1:] if argv is None else argv))
    # A command that failed once SIGTERM came failed because of it (a runtime that got the same
    # signal from the process group may fail before the interrupt reaches us): 143 either way.
    return 128 + 15 if terminated and status != 0 else status


def _run_command(args: list[str]) -> int:
    from typer._click import exceptions as click_exceptions

    debug = _wants_debug(args)
    try:
        command = root_command()
        result = command.main(args=args, prog_name="dist", standalone_mode=False)
        # Outside standalone mode typer returns the code of a typer.Exit, and turns Ctrl-C into Exit(130).
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except TaskExit as e:
        return e.status
    except DistError as e:
        _traceback_if(debug)
        _error(str(e))
        return e.exit_code
    except click_exceptions.UsageError as e:
        if isinstance(e, click_exceptions.NoArgsIsHelpError):  # its message is the whole help text
            _error("no command given" if e.ctx is None or e.ctx.parent is None else f"{e.ctx.command_path}: "
                   "no subcommand given")
        else:
            _error(e.format_message())
        if e.ctx is not None:
            sys.stderr.write(f"Try '{e.ctx.command_path} --help' for help.\n")
        return 2
    except click_exceptions.ClickException as e:
        _error(e.format_message())
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except _BrokenPipe as e:
        if not _stdout_reader_gone():  # a socket or pipe of dist's own: an I/O error like any other
            _error(f"{e.__cause__}")
            return 1
        # The reader went away (``dist images | head``): not an error; silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # an I/O error no layer below expected (a full disk, a path that is a file)
        _traceback_if(debug)
        _error(f"file {e.filename}: {e.strerror}" if e.filename and e.strerror else f"I/O error: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - the last resort: one line, or the traceback under --debug
        _traceback_if(debug)
        _error(f"internal error: {e.__class__.__name__}: {e}")
        return 1


def _stop_on_sigterm_as_on_ctrl_c() -> list[int]:
    """SIGTERM (``timeout``, ``systemctl stop``, ``docker stop``) unwinds the command as ^C does, so
    what it had begun is undone (an import's partial ingest, its lease) instead of being left for
    gc; the exit status is then 143. Returns the list the handler appends to. A SIGTERM ignored by
    whoever started dist stays ignored; a foreground task's shim and ``dist serve`` install their
    own handlers over this one."""
    import signal

    received: list[int] = []
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def interrupt(signum: int, frame: object) -> None:
            received.append(signum)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
    return received


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reading end has closed (poll reports an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):
        return False
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def run() -> None:
    """The ``dist`` program: ``main()``, then exit without the interpreter's teardown.

    Tearing down the few hundred modules typer loads costs about 15 ms here, a sixth of
    ``dist images``, and buys nothing: by now the session is closed, every file dist
    wrote is closed, and no thread is left with work to finish. Only the standard
    streams may hold buffered output, so they are flushed first."""
    import gc

    if not gc.isenabled():  # launch.run() imported us with collection off: start-up is over
        gc.freeze()
        gc.enable()
    stdout = _stdout_that_names_itself()
    if sys.stdout.errors == "strict" and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        # An ASCII stdout (PYTHONIOENCODING=ascii, LC_ALL=C without UTF-8 mode) and a label "värde"
        # made every table an internal error; shown escaped instead, as stderr already shows it.
        sys.stdout.reconfigure(errors="backslashreplace")
    status = main()
    said = status != 0 and stdout is not None and stdout.failed  # main() reported stdout's failure
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away, as in main()
            pass
        except DistError as e:  # stdout's (_Stdout): a listing smaller than its buffer fails here
            if not said:
                _error(str(e))
                status = status or e.exit_code
    os._exit(status)


def _traceback_if(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()


def _error(message: str) -> None:
    """SPEC's one line, whatever the message holds: a newline or escape sequence in a name the
    user gave (or a runtime's message) is shown escaped, as repr() would."""
    if not message.isprintable():
        from dist_tool.render import printable

        message = printable(message)
    sys.stderr.write(f"dist: error: {message}\n")
