"""Command groups: parse, call the domain, render. Only typer and dist_tool.errors at module level."""


from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

if TYPE_CHECKING:
    from collections.abc import Callable

    from dist_tool.session import Session

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Identifiers only, one per line.")]
FiltersArg = Annotated[list[str] | None, typer.Argument(help="Filters, containerd syntax.")]
PROGRESS_MODES = ("auto", "tty", "plain", "none")


def _progress_mode(value: str) -> str:
    if value not in PROGRESS_MODES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PROGRESS_MODES)}")
    return value


ProgressOpt = Annotated[str, typer.Option("--progress", help="auto, tty, plain or none (stderr).",
                                          callback=_progress_mode)]


def session(ctx: typer.Context) -> "Session":
    return ctx.obj


def each(items: list[str], action: "Callable[[str], object]", done: "Callable[[str], None] | None" = None) -> None:
    """A multi-name command: ``action`` on every item, ``done`` after each that worked; one that
    fails does not stop the others, and the first error is what the command exits with."""
    from dist_tool.errors import keep_going

    first = keep_going(items, action, done)
    if first is not None:
        raise first


def one_platform_choice(platform: "str | None", all_platforms: bool = False) -> None:
    """``--platform P`` and ``--all-platforms`` ask for different things: a usage error; so is an
    empty ``--platform ''`` (a script's unset variable), which must not mean every platform."""
    if platform == "" or (platform is not None and all_platforms):
        from dist_tool.errors import InvalidArgument

        raise InvalidArgument("--platform", platform, "must not be empty" if platform == "" else
                              "cannot be combined with --all-platforms")


def report_unreadable(s: "Session", digests: "list[str]") -> None:
    """Why a garbage collection swept nothing: manifests an image needs that cannot be read."""
    for digest in digests:
        s.render.err.write(f"dist: nothing collected: manifest {digest} cannot be read, so what it references "
                           "is unknown (dist images check finds its image)\n")


def report_collection(s: "Session", result: Any) -> None:
    """What a removal's garbage collection did, on stderr: the bytes it freed, or why it could
    free nothing (a manifest an image needs cannot be read, so its references are unknown)."""
    if result is None:
        return
    if result.unreadable:
        report_unreadable(s, result.unreadable[:1])
    elif result.blobs:
        from boltons.strutils import cardinalize

        from dist_tool.render import iec

        count = len(result.blobs)
        s.render.err.write(f"freed {count} {cardinalize('blob', count)}, {iec(result.bytes_freed)}\n")


def word_placeholders(command: Any) -> None:
    """Placeholders as click and man pages write them (``IMAGE``, ``--env ENV``, ``[FILTERS...]``)
    for the parameters that name none: typer 0.28 writes ``{image}`` and ``<str>``. The man pages
    are generated from the same parameters, so help and man say one thing."""
    for param in command.params:
        if (param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False)
                or getattr(param.type, "choices", None)):
            continue
        if param.param_type_name == "option":  # the word the user types: --label LABEL, --exec-id EXEC_ID
            param.metavar = max(param.opts, key=len).lstrip("-").replace("-", "_").upper()
        else:
            param.metavar = (param.name or "value").upper() + ("..." if param.nargs == -1 else "")
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument


class PlainArgument(TyperArgument):
    """A required argument as click, ctr and the man pages write it in a usage line (``IMAGE``),
    not as typer 0.28 does (``{IMAGE}``)."""

    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        word = super().make_metavar(ctx, usage=usage)
        return word[1:-1] if usage and self.required and word.startswith("{") else word


class LazySubcommandGroup(TyperGroup):
    """A group whose subcommands are turned from typer functions into click commands when first
    looked up, so an invocation pays for the command it runs and not for its siblings (typer
    inspects every signature it converts: about half a millisecond a command)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every subcommand in declaration order (help and man pages list them so): its typer
        # CommandInfo until converted into self.commands, None once it is.
        self.declared: dict[str, Any] = dict.fromkeys(self.commands)
        self.pretty_exceptions_short = True

    @classmethod
    def from_typer(cls, app: typer.Typer) -> "LazySubcommandGroup":
        import copy

        bare = copy.copy(app)
        bare.registered_commands = []
        group = typer.main.get_group(bare)
        assert isinstance(group, cls), f"{app.info.name}: a lazy group needs cls={cls.__name__}"
        group.pretty_exceptions_short = app.pretty_exceptions_short
        group.declared = {info.name or typer.main.get_command_name(info.callback.__name__): info
                          for info in app.registered_commands}
        return group

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.declared)

    def get_command(self, ctx: Any, cmd_name: str):
        if cmd_name in self.declared:
            self._convert(cmd_name)
        else:  # a typo: typer suggests from self.commands
            for name in self.declared:
                self._convert(name)
        return self.commands.get(cmd_name)

    def _convert(self, name: str) -> None:
        info = self.declared[name]
        if info is not None:
            self.commands[name] = typer.main.get_command_from_info(
                info, pretty_exceptions_short=self.pretty_exceptions_short, rich_markup_mode=None)
            word_placeholders(self.commands[name])
            self.declared[name] = None


class DefaultLsGroup(LazySubcommandGroup):
    """A group that runs ``ls`` when no subcommand is named: nothing, an option or a filter
    follows the group (``dist images --json``, ``dist images name~=busy``). A bare word that
    names no subcommand is a usage error, not a filter: ``dist leases delete ID`` (ctr's
    spelling) must not list nothing and exit 0. ``ls WORD`` still takes a bare field filter."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.declared and args[0] not in ("-h", "--help")
                        and (args[0].startswith("-") or _FILTER_MARKS.intersection(args[0]))):
            self._check_implied_ls(ctx, args)
            args = ["ls", *args]
        return super().parse_args(ctx, args)

    def _check_implied_ls(self, ctx: Any, args: list[str]) -> None:
        """Every word of an implied ``ls`` is a flag (ls takes no option with a value) or a filter:
        ``dist images -q rm NAME`` listed nothing and removed nothing, with exit 0."""
        ls = self.get_command(ctx, "ls")
        flags = {"-h", "--help"}.union(*(getattr(p, "opts", ()) for p in ls.params)) if ls else set()
        for word in args:
            if word == "--":
                return
            if word.startswith("-"):
                if word not in flags:
                    return  # not one of ls's (`dist images -n NS`): click names the option itself
                continue
            if word in self.declared:
                ctx.fail(f"options go after the subcommand: dist {ctx.info_name} {word} [OPTIONS]")
            if not _FILTER_MARKS.intersection(word):
                ctx.fail(f"No such command {word!r}.")


# What a filter has and a subcommand's name never has: an operator, a path, a quote, a comma.
_FILTER_MARKS = frozenset('=~!."\',')
