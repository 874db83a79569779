"""Docs are generated from the CLI and checked (CONVENTIONS G14; SPEC "Help").

The man pages in man/ must match what tools/gen_man.py makes from the CLI now;
every command has help; ``--help`` on every group and subcommand exits 0 and
prints its usage, naming its subcommands and options, on stdout.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dist_tool import cli

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "python tools/gen_man.py"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("DIST_")}, "COLUMNS": "200"}


def _context(command, name, parent=None):
    from typer import _click

    return _click.Context(command, info_name=name, parent=parent, **(command.context_settings or {}))


def _is_group(command) -> bool:
    return callable(getattr(command, "list_commands", None))


def _tree():
    """(path, command, context) for every group and (nested) subcommand, declaration order."""
    root_ctx = _context(typer.main.get_command(cli.app), "dist")
    out = []

    def visit(path, command, ctx):
        out.append((path, command, ctx))
        if _is_group(command):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                visit([*path, name], sub, _context(sub, name, ctx))

    for name in cli.COMMANDS:
        group = cli.load_command(name)
        visit([name], group, _context(group, name, root_ctx))
    return out


TREE = _tree()


def _long_options(command, ctx) -> list[str]:
    return [max(p.opts, key=len) for p in command.get_params(ctx)
            if p.param_type_name == "option" and not getattr(p, "hidden", False)]


def _typer_placeholders(text: str) -> list[str]:
    """typer 0.28's own placeholders (``<str>``, ``{image}``, ``{IMAGE}`` for a required argument in
    a usage line), which dist's help replaces by the words its man pages use."""
    return re.findall(r"<(?:str|int|float|bool|path|file|choice)>|\{[A-Za-z_. -]+\}", text)


def _expected_names(command, ctx) -> list[str]:
    """What a --help must name: the subcommands of a group, the options of a command."""
    if _is_group(command):
        return [n for n in command.list_commands(ctx) if not command.get_command(ctx, n).hidden]
    return _long_options(command, ctx)


def test_man_pages_are_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "gen_man.py"), str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    fresh = {p.name: p.read_text(encoding="utf-8") for p in sorted(tmp_path.glob("*.1"))}
    checked_in = {p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / "man").glob("*.1"))}
    assert sorted(fresh) == sorted(checked_in), f"man/ pages differ in set; run `{REGENERATE}`"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    if stale:
        diff = difflib.unified_diff(checked_in[stale[0]].splitlines(), fresh[stale[0]].splitlines(),
                                    f"man/{stale[0]}", "regenerated", lineterm="", n=1)
        pytest.fail(f"man/{', man/'.join(stale)} out of date with the CLI; run `{REGENERATE}`\n"
                    + "\n".join(list(diff)[:40]))


def test_every_command_has_help() -> None:
    root = typer.main.get_command(cli.app)
    assert (root.help or "").strip(), "dist has no help"
    missing = [" ".join(path) for path, command, _ in TREE if not (command.help or "").strip()]
    missing += [f"{name} (COMMANDS one-line help)" for name, entry in cli.COMMANDS.items() if not entry[2].strip()]
    assert not missing, f"commands without help: {missing}"


@pytest.fixture(scope="module")
def group_help(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """`dist <group> --help` through the real entry point: one process per group, all at once."""
    base = tmp_path_factory.mktemp("help")
    procs = {name: subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(base / "root"),
                                     "--state", str(base / "state"), name, "--help"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for name in cli.COMMANDS}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_group_help_through_entry_point(name: str, group_help) -> None:
    result = group_help[name]
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and f"dist {name}" in result.stdout
    _, command, ctx = next(t for t in TREE if t[0] == [name])
    missing = [n for n in _expected_names(command, ctx) if n not in result.stdout]
    assert not missing, f"`dist {name} --help` does not name {missing}"
    assert not _typer_placeholders(result.stdout), result.stdout


def test_placeholders_are_words_through_entry_point(tmp_path: Path) -> None:
    root_help = subprocess.run([sys.executable, "-m", "dist_tool", "--help"], capture_output=True, text=True,
                               env=ENV, timeout=60)
    assert "--root ROOT" in root_help.stdout and "-n, --namespace NAMESPACE" in root_help.stdout
    create_help = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(tmp_path / "root"),
                                  "container", "create", "--help"], capture_output=True, text=True, env=ENV,
                                 timeout=60)
    assert "dist container create [OPTIONS] IMAGE ID [-- ARG...]" in create_help.stdout
    assert "-e, --env ENV" in create_help.stdout and "--runtime RUNTIME" in create_help.stdout
    for result in (root_help, create_help):
        assert result.returncode == 0 and not _typer_placeholders(result.stdout), result.stdout


SUBCOMMANDS = [pytest.param(path, command, ctx, id=" ".join(path))
               for path, command, ctx in TREE if len(path) > 1]


@pytest.mark.parametrize(("path", "command", "ctx"), SUBCOMMANDS)
def test_subcommand_help(path: list[str], command, ctx, tmp_path: Path) -> None:
    args = ["--root", str(tmp_path / "root"), "--state", str(tmp_path / "state"), *path, "--help"]
    result = CliRunner().invoke(cli.app, args, prog_name="dist", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and f"dist {' '.join(path)}" in result.stdout
    missing = [n for n in _expected_names(command, ctx) if n not in result.stdout]
    assert not missing, f"`dist {' '.join(path)} --help` does not name {missing}"
    assert not _typer_placeholders(result.stdout), result.stdout
