"""Generate dist's man pages from the CLI's own definitions (CONVENTIONS G14).

    python tools/gen_man.py [OUTDIR]        # default: man/ beside this tools/ directory

Writes ``dist.1`` (global options, the command list, aliases) and one
``dist-<group>.1`` per entry of ``dist_tool.cli.COMMANDS`` (aliases get no page).
It walks the click tree typer builds, so a newly registered group or subcommand
is documented without touching this file. Output is deterministic: no dates or
versions, groups and aliases sorted, subcommands and options in declaration
order, so ``tests/test_docs.py`` can diff it against the checked-in pages.
Pages of groups that no longer exist are removed from OUTDIR.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANUAL = "dist manual"


def esc(text: str) -> str:
    """Plain text → roff: backslashes, hyphens and non-ASCII escaped; no line starts a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def ital(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def paragraphs(help_text: str | None) -> list[str]:
    """A docstring's paragraphs, each an escaped block of lines."""
    text = inspect.cleandoc(help_text or "")
    blocks = [b.strip("\n") for b in text.split("\n\n")]
    return [esc(b) for b in blocks if b.strip()]


def first_line(help_text: str | None) -> str:
    blocks = inspect.cleandoc(help_text or "").split("\n\n")
    return " ".join(blocks[0].split())


def is_group(command: Any) -> bool:
    return callable(getattr(command, "list_commands", None))


def context(command: Any, name: str, parent: Any = None) -> Any:
    """A click context without parsing, so inherited settings (``-h``) show as they do at run time."""
    from typer import _click

    return _click.Context(command, info_name=name, parent=parent, **(command.context_settings or {}))


def visible_params(command: Any, ctx: Any, kind: str) -> list[Any]:
    return [p for p in command.get_params(ctx) if p.param_type_name == kind and not getattr(p, "hidden", False)]


def metavar(param: Any) -> str:
    choices = getattr(param.type, "choices", None)
    if choices:
        return "[" + "|".join(str(c) for c in choices) + "]"
    return param.metavar  # every other parameter has one: dist_tool.commands.word_placeholders


def argument_usage(param: Any) -> str:
    word = metavar(param)
    return ital(word) if param.required or word.startswith("[") else f"[{ital(word)}]"


def usage(command: Any, ctx: Any) -> str:
    """The roff usage tail of one command: [OPTIONS], its arguments, or COMMAND for a group."""
    parts = [f"[{ital('OPTIONS')}]"]
    if is_group(command):
        parts.append(f"{ital('COMMAND')} [{ital('ARGS')}]...")
    parts += [argument_usage(p) for p in visible_params(command, ctx, "argument")]
    return " ".join(parts)


def option_term(param: Any) -> str:
    # Short names first, then sorted: click keeps the help option's names in a set, whose order varies per run.
    names = ", ".join(bold(o) for o in sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
    if param.secondary_opts:
        names += ", " + ", ".join(bold(o) for o in param.secondary_opts)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return names
    return f"{names} {ital(metavar(param))}"


def param_items(command: Any, ctx: Any, kind: str) -> list[str]:
    out = []
    for param in visible_params(command, ctx, kind):
        record = param.get_help_record(ctx)
        help_text = record[1] if record else ""
        term = ital(metavar(param)) if kind == "argument" else option_term(param)
        out += [".TP", term, esc(help_text) if help_text.strip() else ""]
    return [line for line in out if line != ""]


def subcommands(group: Any, ctx: Any) -> Iterator[tuple[list[str], Any, Any]]:
    """(path below the group, command, its context), depth first, in declaration order."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or getattr(command, "hidden", False):
            continue
        sub_ctx = context(command, name, ctx)
        yield [name], command, sub_ctx
        if is_group(command):
            for path, nested, nested_ctx in subcommands(command, sub_ctx):
                yield [name, *path], nested, nested_ctx


def header(title: str, name: str, summary: str) -> list[str]:
    return [f'.TH {esc(title.upper())} 1 "" "dist" "{MANUAL}"', ".SH NAME", f"{esc(name)} \\- {esc(summary)}"]


def see_also(names: list[str]) -> list[str]:
    refs = [f".BR {esc(n)} (1){',' if i < len(names) - 1 else ''}" for i, n in enumerate(names)]
    return [".SH SEE ALSO", *refs]


def described(help_text: str | None) -> list[str]:
    out: list[str] = []
    for i, block in enumerate(paragraphs(help_text)):
        out += ([".PP"] if i else []) + [block]
    return out


def group_page(name: str, command: Any, root_ctx: Any, aliases: list[str]) -> str:
    ctx = context(command, name, root_ctx)
    lines = header(f"dist-{name}", f"dist-{name}", first_line(command.help))
    entries = list(subcommands(command, ctx)) if is_group(command) else []
    lines.append(".SH SYNOPSIS")
    synopses = [(f"{bold('dist')} [{ital('GLOBAL OPTIONS')}] {bold(name)} {usage(command, ctx)}")]
    synopses += [f"{bold(' '.join(['dist', name, *path]))} {usage(sub, sub_ctx)}"
                 for path, sub, sub_ctx in entries if not is_group(sub)]
    lines += "\n.br\n".join(synopses).split("\n")
    lines += [".SH DESCRIPTION", *described(command.help)]
    if aliases:
        lines += [".PP", "Also invoked as " + ", ".join(bold(f"dist {a}") for a in aliases) + "."]
    if visible_params(command, ctx, "argument"):
        lines += [".SH ARGUMENTS", *param_items(command, ctx, "argument")]
    lines += [".SH OPTIONS", *param_items(command, ctx, "option")]
    if entries:
        lines.append(".SH COMMANDS")
    for path, sub, sub_ctx in entries:
        lines += [f'.SS "{esc(" ".join(path))}"', f"{bold(' '.join(['dist', name, *path]))} {usage(sub, sub_ctx)}",
                  ".PP", *described(sub.help)]
        if visible_params(sub, sub_ctx, "argument"):
            lines += [".PP", "Arguments:", ".RS", *param_items(sub, sub_ctx, "argument"), ".RE"]
        lines += [".PP", "Options:", ".RS", *param_items(sub, sub_ctx, "option"), ".RE"]
    lines += see_also(["dist"])
    return "\n".join(lines) + "\n"


def root_page(root: Any, root_ctx: Any, groups: dict[str, Any], aliases: dict[str, list[str]]) -> str:
    summary = first_line(root.help)
    summary = summary[len("dist:"):].strip() if summary.startswith("dist:") else summary
    lines = header("dist", "dist", summary)
    lines += [".SH SYNOPSIS",
              f"{bold('dist')} [{ital('GLOBAL OPTIONS')}] {ital('COMMAND')} [{ital('SUBCOMMAND')}] "
              f"[{ital('OPTIONS')}] [{ital('ARGS')}]",
              ".SH DESCRIPTION", *described(root.help),
              ".PP", "Global options go before the command. Each command has its own page, listed below.",
              ".SH GLOBAL OPTIONS", *param_items(root, root_ctx, "option"), ".SH COMMANDS"]
    for name in sorted(groups):
        lines += [".TP", bold(name), f"{esc(first_line(groups[name].help))} See {bold(f'dist-{name}')}(1)."]
    if aliases:
        lines.append(".SH ALIASES")
        for target in sorted(aliases):
            lines += [".TP", ", ".join(bold(a) for a in aliases[target]), f"Same as {bold(target)}."]
    lines += see_also([f"dist-{name}" for name in sorted(groups)])
    return "\n".join(lines) + "\n"


def render_pages() -> dict[str, str]:
    """File name → page text, for every command group the CLI registers."""
    from dist_tool import cli

    root = cli.root_command()
    root_ctx = context(root, "dist")
    groups = {name: cli.load_command(name) for name in cli.COMMANDS}
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(cli.ALIASES.items()):
        aliases.setdefault(target, []).append(alias)
    pages = {"dist.1": root_page(root, root_ctx, groups, aliases)}
    for name in sorted(groups):
        pages[f"dist-{name}.1"] = group_page(name, groups[name], root_ctx, aliases.get(name, []))
    return pages


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        sys.stderr.write("usage: python tools/gen_man.py [OUTDIR]\n")
        return 2
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run from a checkout without an installed dist_tool
    outdir = Path(args[0]) if args else ROOT / "man"
    pages = render_pages()
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(outdir.glob("dist*.1")):
        if stale.name not in pages:
            stale.unlink()
    for filename, text in pages.items():
        (outdir / filename).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
