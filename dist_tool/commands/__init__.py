"""Command groups: parse, call the domain, render. Only typer and dist_tool.errors at module level."""


from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from dist_tool.session import Session

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Identifiers only, one per line.")]
ProgressOpt = Annotated[str, typer.Option("--progress", help="auto, tty, plain or none (stderr).")]


def session(ctx: typer.Context) -> "Session":
    return ctx.obj


class DefaultLsGroup(TyperGroup):
    """A group that runs ``ls`` when no subcommand is named (``dist images --json``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["ls", *args]
        return super().parse_args(ctx, args)
