"""The ``dist`` program's first module: imports nothing but ``gc`` (and ``sys``) before the CLI.

Importing typer, click and dist's command layer allocates tens of thousands of
long-lived objects (classes, functions, module dicts), and the cycle collector
would scan them again and again while they are made, for cycles that are not
there: about 7 ms of every command here (paired runs). Collection is off while the CLI is
imported; ``cli.run`` freezes what start-up made (later collections skip it)
and turns collection back on before any command runs, so a long pull, a
``dist serve`` or a foreground task collects as usual.
"""

import gc
import sys


def run() -> None:
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _open_closed_standard_streams()
    gc.disable()
    try:
        from dist_tool.cli import run as run_cli
    except KeyboardInterrupt:  # ^C while the CLI loads: SPEC's status, and no traceback
        import os

        os._exit(130)
    run_cli()


def _open_closed_standard_streams() -> None:
    """``dist ... >&-``: a closed 0, 1 or 2 is opened on /dev/null. Python leaves the stream None
    (and printing to it fails), and the next file dist opened would take the number, so a
    container's output or a shim's log could land in the store's files."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself, in this order
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 - the process's own stream
