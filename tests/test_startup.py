"""Start-up stays cheap (CONVENTIONS G10, pip's test_no_network_imports): what a run leaves in sys.modules.

Each check runs in a fresh interpreter through ``dist_tool.cli.main`` with stdout
on a pseudo-terminal, so the table path would really build a rich table (off a
terminal render.py prints plain columns and never imports rich). The first
command on a new root creates the store, and that write may take the file lock,
so every root is created beforehand and the assertions are about later reads:
on an empty root, and on one holding an image.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dist_tool"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("DIST_")}
HEAVY_FOR_JSON = ["pydantic", "tarfile", "asyncio", "rich", "rich.table", "httpx", "filelock", "zstandard", "_hashlib"]

RUN = """
import json, sys
from dist_tool.cli import main
rc = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def modules_after(*args: str) -> set[str]:
    """The modules loaded by one ``dist ARGS`` run in a new interpreter, stdout on a terminal."""
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-c", RUN, *args], stdout=secondary, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=ENV, timeout=60)
    finally:
        os.close(secondary)
        os.close(primary)  # what dist printed is not needed; a listing this small fits the pty's buffer
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0, result.stderr
    return set(report["modules"])


@pytest.fixture(scope="module", params=["empty", "one-image"])
def store(request, tmp_path_factory) -> list[str]:
    """Global options for a root that exists: empty, or holding one image made from a rootfs directory."""
    base = tmp_path_factory.mktemp(request.param)
    options = ["--root", str(base / "root"), "--state", str(base / "state")]
    modules_after(*options, "images")
    if request.param == "one-image":
        (base / "rootfs" / "bin").mkdir(parents=True)
        (base / "rootfs" / "bin" / "hello").write_text("hello\n")
        modules_after(*options, "images", "import", "--rootfs", str(base / "rootfs"), "--name",
                      "example.com/startup:1", "--progress", "none")
    return options


def test_images_json_loads_no_heavy_module(store: list[str]) -> None:
    loaded = modules_after(*store, "images", "--json")
    assert "dist_tool.commands.images" in loaded  # the command really ran
    assert sorted(loaded & set(HEAVY_FOR_JSON)) == []


@pytest.mark.parametrize("group,module", [("snapshot", "snapshots"), ("container", "containers")])
def test_other_listings_load_no_heavy_module(store: list[str], group: str, module: str) -> None:
    loaded = modules_after(*store, group, "ls", "--json")
    assert f"dist_tool.commands.{module}" in loaded
    assert sorted(loaded & set(HEAVY_FOR_JSON)) == []


def test_images_quiet_builds_no_table(store: list[str]) -> None:
    loaded = modules_after(*store, "images", "-q")
    assert "dist_tool.commands.images" in loaded
    assert "rich.table" not in loaded


def test_table_on_a_terminal_is_what_the_checks_would_catch(store: list[str]) -> None:
    """The control: were this false, the two checks above could not fail."""
    assert "rich.table" in modules_after(*store, "images"), "`dist images` on a terminal no longer uses rich.table"


SHIM = """
import json, pkgutil, sys, importlib
before = set(sys.modules)
import dist_tool.shim as shim
for info in pkgutil.walk_packages(shim.__path__, "dist_tool.shim."):
    if not info.name.endswith(".__main__"):  # __main__ runs the shim; its imports are checked by test_layers
        importlib.import_module(info.name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_shim_starts_on_stdlib_alone() -> None:
    result = subprocess.run([sys.executable, "-c", SHIM], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    third_party = [m for m in loaded if m.split(".")[0] not in (*sys.stdlib_module_names, "dist_tool")]
    assert third_party == [], f"the shim's start loads {third_party}"


SHIM_BARE = """
import sys
sys.path.insert(0, sys.argv[1])
import dist_tool.shim.__main__, dist_tool.shim.server, dist_tool.shim.execs, dist_tool.shim.console
import dist_tool.proc  # what main() imports once it has its config
print(" ".join(sorted(sys.modules)))
"""


def test_the_shim_does_without_os() -> None:
    """The shim is a ``python -I -S`` (no site, so no ``os``), one per running task: its memory is
    a target (issue 5). Importing ``os`` there (through dist_tool.proc) cost each shim ~0.2 MB of
    RSS and pushed its PSS over 3.5 MB; it uses ``posix`` instead."""
    root = str(Path(__file__).resolve().parent.parent)
    result = subprocess.run([sys.executable, "-I", "-S", "-c", SHIM_BARE, root], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "dist_tool.proc" in loaded  # the control: the module that brought os in is there
    assert not {"os", "posixpath", "stat"} & set(loaded)


def test_a_group_converts_only_the_subcommand_it_runs():
    from dist_tool import cli

    group = cli.load_command("images")
    declared = group.list_commands(None)
    assert declared[:3] == ["pull", "push", "ls"] and "tag" in declared and group.commands == {}
    assert group.get_command(None, "tag").name == "tag"
    assert list(group.commands) == ["tag"] and group.list_commands(None) == declared  # order kept
    assert group.get_command(None, "nosuch") is None  # a typo: typer suggests from all of them
    assert list(group.commands) == ["tag", *(n for n in declared if n != "tag")]


LAUNCH = """
import gc, json, sys
gc.disable()  # as launch.run() leaves it while the CLI is imported
from dist_tool import cli, launch

def command_runs(argv=None):
    print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}), flush=True)
    return 7

cli.main = command_runs
launch.run()
"""


def test_collection_is_back_on_before_any_command_runs() -> None:
    """``dist`` imports its CLI with the cycle collector off (launch.py); by the time a command
    runs, what start-up made is frozen and collection is on again, so a long pull, ``dist serve``
    or a foreground task collects as usual. The program's status is the command's."""
    result = subprocess.run([sys.executable, "-c", LAUNCH], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 7, result.stderr
    state = json.loads(result.stdout)
    assert state["enabled"] is True
    assert state["frozen"] > 10_000  # typer, click and dist's command layer


def test_an_interrupt_while_the_cli_loads_is_130_without_a_traceback() -> None:
    """^C right after Enter lands in the imports, before main() can catch it."""
    interrupted_import = """
import sys
class InterruptTheCli:
    def find_spec(self, name, path=None, target=None):
        if name == "dist_tool.cli":
            raise KeyboardInterrupt
sys.meta_path.insert(0, InterruptTheCli())
from dist_tool.launch import run
run()
"""
    proc = subprocess.run([sys.executable, "-c", interrupted_import, "images"], capture_output=True, text=True,
                          env=ENV, cwd=PKG.parent, timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "")
