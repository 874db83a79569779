"""The ``dist`` program's first module: imports nothing but ``gc`` before the CLI.

Importing typer, click and dist's command layer allocates tens of thousands of
long-lived objects (classes, functions, module dicts), and the cycle collector
would scan them again and again while they are made, for cycles that are not
there: about 7 ms of every command here (paired runs). Collection is off while the CLI is
imported; ``cli.run`` freezes what start-up made (later collections skip it)
and turns collection back on before any command runs, so a long pull, a
``dist serve`` or a foreground task collects as usual.
"""

import gc


def run() -> None:
    gc.disable()
    from dist_tool.cli import run as run_cli

    run_cli()
