"""dist run and dist task through the real entry point, with the real runc: exit statuses, detached
tasks seen from new invocations, logs, exec, pause/resume, kill + wait, lastExit, a killed shim,
a terminal, signals, and 20 tasks at once. After every test nothing of a task may remain: no mount
under the test's state, no runc state, no shim process."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import BUSYBOX, Dist, fill, make_busybox_rootfs, tmpfs
from layerkit import file, layer, oci_archive, overlay_supported

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="tasks need root: mounts, namespaces, cgroups"),
    pytest.mark.skipif(not any(os.access(os.path.join(d, "runc"), os.X_OK)
                               for d in os.environ.get("PATH", "").split(os.pathsep)),
                       reason="runc is not installed (.ci/run installs it)"),
]
TIMEOUT = 30


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Dist:
    """One store with a busybox image for the module; each test uses its own container IDs."""
    base = tmp_path_factory.mktemp("tasks")
    rootfs = make_busybox_rootfs(base / "rootfs")
    os.symlink("busybox", rootfs / "bin" / "stty")
    os.symlink("busybox", rootfs / "bin" / "tty")
    # For commands that cannot start: links that only resolve inside the root, things that cannot run.
    (rootfs / "usr" / "bin" / "adir").mkdir(parents=True)
    (rootfs / "usr" / "bin" / "plain").write_text("not executable\n")
    os.symlink("/bin", rootfs / "usr" / "local")  # /usr/local/echo is the root's /bin/echo
    os.symlink(os.path.realpath(sys.executable), rootfs / "bin" / "host")  # the host's file, not the root's
    os.symlink("loop", rootfs / "bin" / "loop")
    (rootfs / "tools").mkdir()  # a bind mount's destination (test_commands_under_a_mount_are_the_runtimes_to_judge)
    d = Dist(base / "root")
    d.ok("images", "import", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd", "/bin/sh")
    yield d
    _kill_leftovers(d)


@pytest.fixture
def bb(store: Dist) -> Dist:
    yield store
    leftovers = _kill_leftovers(store)
    assert leftovers == [], f"tasks left running: {leftovers}"
    assert_clean(store)


def _kill_leftovers(d: Dist) -> list[str]:
    ns = d.state / "default"
    names = [n for n in os.listdir(ns) if not n.startswith(".")] if ns.exists() else []
    for name in names:
        d("c", "rm", "-f", name, timeout=TIMEOUT)
    return names


def shim_pids(d: Dist) -> list[int]:
    """Live processes whose command line names this store's state: shims (and the tasks' CLIs)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        if b"dist_tool.shim" in cmdline and str(d.state).encode() in cmdline and ") Z " not in stat:
            found.append(int(entry))
    return found


def assert_clean(d: Dist) -> None:
    """Nothing of any task remains: mounts, runc state, shims, task directories."""
    deadline = time.monotonic() + 5
    while shim_pids(d) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shim_pids(d) == []
    with open("/proc/mounts") as f:
        assert [line for line in f if str(d.state) in line] == []
    runc_root = d.state / ".runc" / "default"
    if runc_root.exists():
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
        assert listed.stdout.split() == []
    ns = d.state / "default"
    assert [n for n in os.listdir(ns)] == [] if ns.exists() else True


def tasks(d: Dist) -> dict[str, dict]:
    return {t["id"]: t for t in d.ok("task", "ls", "--json").json}


def wait_for(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def last_exit(d: Dist, cid: str) -> dict | None:
    return d.ok("c", "info", cid, "--json").json["lastExit"]


# ---------------------------------------------------------------- exit statuses


@pytest.mark.parametrize(("args", "status"), [
    (["sh", "-c", "exit 7"], 7),
    (["true"], 0),
    (["sh", "-c", "exec sh -c 'exit 255'"], 255),
], ids=["exit-7", "true", "exit-255"])
def test_run_rm_passes_the_status_through_and_removes_the_container(bb, args, status):
    r = bb("run", "--rm", "busybox", "st", "--", *args, timeout=TIMEOUT)
    assert r.code == status, r.stderr
    assert bb.ok("c", "ls", "-q").lines == []


def test_run_rm_detached_removes_the_container_when_its_task_exits(bb):
    """SPEC's synopsis is `dist run [--rm] [-d]`; the two were refused together. The shim, its
    task gone and cleaned up, becomes `container rm` (docker's --rm -d)."""
    r = bb("run", "--rm", "-d", "busybox", "rmd", "--", "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 3",
           timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    assert "rmd" in tasks(bb)
    bb.ok("task", "exec", "rmd", "--exec-id", "go", "--", "sh", "-c", ": > /go")  # now it may exit
    wait_for(lambda: bb.ok("c", "ls", "-q").lines == [], "the container to go")
    assert "rmd" not in bb.ok("snapshot", "ls", "-q").lines
    assert_clean(bb)


CANNOT_RUN = [
    ("nosuch", 127, "executable file not found in $PATH"),
    ("plain", 127, "executable file not found in $PATH (/usr/bin/plain: not executable)"),
    ("adir", 127, "executable file not found in $PATH (/usr/bin/adir: a directory)"),
    ("/bin/nosuch", 127, "no such file or directory"),
    ("bin/nosuch", 127, "no such file or directory"),
    ("/bin/host", 127, "no such file or directory"),
    ("/etc", 126, "permission denied (a directory)"),
    ("/etc/passwd", 126, "permission denied (not executable)"),
    ("/etc/passwd/x", 126, "not a directory"),
    ("/bin/loop", 126, "too many levels of symbolic links"),
]
CANNOT_RUN_IDS = ["not-on-path", "on-path-not-executable", "on-path-a-directory", "no-such-path", "no-such-relative",
                  "link-to-a-host-file", "directory", "not-executable", "file-on-the-way", "symlink-loop"]


@pytest.mark.parametrize(("command", "status", "why"), CANNOT_RUN, ids=CANNOT_RUN_IDS)
def test_commands_that_cannot_run_exit_126_or_127_with_one_line(bb, command, status, why):
    r = bb("run", "--rm", "busybox", "bad", "--", command, "arg", timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (status, "", f'dist: error: task bad: exec: "{command}": {why}\n')
    assert bb.ok("c", "ls", "-q").lines == []


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_task_start_of_a_command_that_cannot_run_is_one_line(bb, detach):
    bb.ok("c", "create", "busybox", "cr", "--", "/etc")
    r = bb("task", "start", *(["-d"] if detach else []), "cr", timeout=TIMEOUT)
    assert (r.code, r.stderr) == (126, 'dist: error: task cr: exec: "/etc": permission denied (a directory)\n')
    r = bb("run", *(["-d"] if detach else ["--rm"]), "busybox", "cr2", "--", "nosuch", timeout=TIMEOUT)
    assert (r.code, r.stderr) == (127, 'dist: error: task cr2: exec: "nosuch": executable file not found in $PATH\n')
    assert bb("task", "wait", "cr").code == 3  # it never ran
    bb.ok("c", "rm", "cr")
    if detach:
        bb.ok("c", "rm", "cr2")


@pytest.mark.parametrize(("options", "args"), [
    ([], ["echo", "hi"]),
    ([], ["/usr/local/echo", "hi"]),
    ([], ["./bin/echo", "hi"]),
    (["--cwd", "/usr/local"], ["./echo", "hi"]),
    (["--cwd", "/usr/local"], ["../../bin/echo", "hi"]),
    (["--env", "PATH=/nosuch:/usr/local"], ["echo", "hi"]),
], ids=["on-path-a-symlink", "absolute-dir-link", "relative", "relative-from-linked-cwd", "dotdot", "path-from-env"])
def test_commands_found_inside_the_root_run(bb, options, args):
    r = bb("run", "--rm", *options, "busybox", "found", "--", *args, timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (0, "hi\n", "")


def test_commands_under_a_mount_are_the_runtimes_to_judge(bb, tmp_path):
    """A bind mount's content is not in the root filesystem dist looks at before runc runs: the
    check must not call it missing (runc's own verdict stands, as for a bad #! line)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy2(BUSYBOX, tools / "busybox")
    os.symlink("busybox", tools / "printf")  # an applet the image does not have
    mount = f"type=bind,src={tools},dst=/tools,options=ro"
    r = bb("run", "--rm", "--mount", mount, "busybox", "mnt", "--", "/tools/busybox", "echo", "hi", timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (0, "hi\n", "")
    r = bb("run", "--rm", "--mount", mount, "--env", "PATH=/tools:/bin", "busybox", "mnt", "--", "printf", "hi\\n",
           timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (0, "hi\n", "")
    r = bb("run", "--rm", "--mount", mount, "busybox", "mnt", "--", "/tools/nosuch", timeout=TIMEOUT)
    assert r.code == 127 and r.stderr.endswith('dist: error: task mnt: exec: "/tools/nosuch": '
                                               'stat /tools/nosuch: no such file or directory\n')
    bb.ok("run", "-d", "--mount", mount, "--env", "PATH=/tools:/bin", "busybox", "mnt", "--", "sleep", "30",
          timeout=TIMEOUT)
    r = bb("task", "exec", "mnt", "--exec-id", "e1", "--", "printf", "hi\\n")
    assert (r.code, r.stdout, r.stderr) == (0, "hi\n", "")
    r = bb("task", "exec", "mnt", "--exec-id", "e2", "--", "/tools/nosuch")  # seen in the task's own root
    assert (r.code, r.stderr) == (127, 'dist: error: task mnt: exec: "/tools/nosuch": no such file or directory\n')
    bb.ok("c", "rm", "-f", "mnt", timeout=TIMEOUT)


@pytest.mark.parametrize(("command", "status", "why"), CANNOT_RUN, ids=CANNOT_RUN_IDS)
def test_exec_of_a_command_that_cannot_run_is_one_line(bb, command, status, why):
    bb.ok("run", "-d", "busybox", "ex", "--", "sleep", "30", timeout=TIMEOUT)
    line = f'dist: error: task ex: exec: "{command}": {why}\n'
    for detach in ([], ["-d"]):
        r = bb("task", "exec", *detach, "ex", "--exec-id", "e", "--", command)
        assert (r.code, r.stdout, r.stderr) == (status, "", line)
    assert bb.ok("task", "ls", "-q").lines == ["ex"]  # the task lives on
    bb.ok("c", "rm", "-f", "ex", timeout=TIMEOUT)


def test_an_exec_argument_that_is_not_utf8_is_a_usage_error(bb):
    """runc read it from JSON as U+FFFD: `echo` printed three other bytes than were given."""
    bb.ok("run", "-d", "busybox", "ex", "--", "sleep", "30", timeout=TIMEOUT)
    for detach in ([], ["-d"]):
        r = bb("task", "exec", *detach, "ex", "--exec-id", "e", "--", "echo", "\udcff")
        assert (r.code, r.stdout, r.stderr) == (2, "", "dist: error: argument \\xff: is not valid UTF-8\n")
    bb.ok("c", "rm", "-f", "ex", timeout=TIMEOUT)


def _runtime_that(tmp_path, name: str, on_start: str) -> dict:
    """DIST_RUNTIME: runc, except that ``run`` and ``create`` do ``on_start`` (shell) instead."""
    wrapper = tmp_path / name
    wrapper.write_text(f"#!/bin/sh\ncase \" $* \" in *\" run \"*|*\" create \"*) {on_start};; esac\n"
                       f"exec {shutil.which('runc')} \"$@\"\n")
    wrapper.chmod(0o755)
    return {"DIST_RUNTIME": str(wrapper)}


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_a_runtime_interrupted_at_start_is_130_and_run_rm_leaves_nothing(bb, tmp_path, detach):
    """^C to the whole process group reaches runc too: that is an interrupt, not a failure."""
    env = _runtime_that(tmp_path, "interrupted-runc", "kill -INT $$")
    r = bb("run", "--rm", *(["-d"] if detach else []), "busybox", "intr", "--", "true", env=env, timeout=TIMEOUT)
    assert (r.code, r.stderr) == (130, "dist: error: task intr: interrupted: the runtime was stopped by signal 2\n")
    assert bb("c", "info", "intr").code == 3


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
@pytest.mark.parametrize("runtime, mode, why", [
    ("plain-file", 0o644, "runtime {path}: is not executable"),
    ("lost-interpreter", 0o755, "task {cid}: runtime {path}: cannot be run: the interpreter its #! line names "
                                "was not found"),
    ("does-nothing", 0o755, "task {cid}: the runtime reported success but wrote no process id (--pid-file): "
                            "is it a runtime with runc's command line?"),
])
def test_a_runtime_that_cannot_run_or_starts_nothing_is_one_line_and_leaves_nothing(bb, tmp_path, runtime, mode,
                                                                                     why, detach):
    """Said before: "not found" of a file that is there, "[Errno 2] No such file or directory:"
    naming the runtime (its #! interpreter was missing) or the init.pid it never wrote."""
    path = tmp_path / runtime
    path.write_text({"plain-file": "#!/bin/sh\n", "lost-interpreter": "#!/nonexistent/sh\n",
                     "does-nothing": "#!/bin/sh\nexit 0\n"}[runtime])
    path.chmod(mode)
    cid = f"rt-{runtime}-{int(detach)}"
    r = bb("run", *(["-d"] if detach else []), "busybox", cid, "--", "true", env={"DIST_RUNTIME": str(path)},
           timeout=TIMEOUT)
    assert (r.code, r.stderr) == (125, f"dist: error: {why.format(path=path, cid=cid)}\n")
    assert_clean(bb)
    bb.ok("c", "rm", cid)


def test_an_exec_the_runtime_reports_started_but_did_not_is_one_line(bb, tmp_path):
    runtime = tmp_path / "exec-nothing-runc"
    runtime.write_text(f"#!/bin/sh\ncase \" $* \" in *\" exec \"*) exit 0;; esac\nexec {shutil.which('runc')} \"$@\"\n")
    runtime.chmod(0o755)
    bb.ok("run", "-d", "busybox", "noexec", "--", "sleep", "30", env={"DIST_RUNTIME": str(runtime)})
    r = bb("task", "exec", "noexec", "--exec-id", "e", "--", "true", timeout=TIMEOUT)
    assert (r.code, r.stderr) == (125, "dist: error: task noexec: the runtime reported success but wrote no "
                                       "process id (--pid-file): is it a runtime with runc's command line?\n")
    assert tasks(bb)["noexec"]["status"] == "running"
    bb.ok("c", "rm", "-f", "noexec", timeout=TIMEOUT)


def test_a_runtime_state_left_by_a_failed_delete_does_not_block_the_next_start(bb, tmp_path):
    """A runtime whose delete failed once at a task's end kept a stopped container of the ID, and
    every later start of it failed: "container with given ID already exists" (125)."""
    broken = tmp_path / "delete-broken"
    broken.touch()
    runtime = tmp_path / "undeleting-runc"
    runtime.write_text(f"#!/bin/sh\ncase \" $* \" in *\" delete \"*) test -e {broken} && exit 1;; esac\n"
                       f"exec {shutil.which('runc')} \"$@\"\n")
    runtime.chmod(0o755)
    env = {"DIST_RUNTIME": str(runtime)}
    bb.ok("run", "-d", "busybox", "stale", "--", "true", env=env)
    assert bb("task", "wait", "stale", timeout=TIMEOUT).code == 0
    runc_root = bb.state / ".runc" / "default"
    listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
    assert "stale" in listed.stdout.split()  # what the failed delete left
    broken.unlink()
    bb.ok("task", "start", "stale", env=env, timeout=TIMEOUT)
    bb.ok("task", "start", "-d", "stale", env=env, timeout=TIMEOUT)
    assert bb("task", "wait", "stale", timeout=TIMEOUT).code == 0
    assert_clean(bb)
    bb.ok("c", "rm", "stale")


def test_a_runtime_that_fails_a_pause_or_kill_is_exit_1_not_125(bb, tmp_path):
    """125 is for the commands that pass a task's status through (SPEC); task pause, resume and
    kill are not among them, so the runtime's refusal is the operation failing: 1."""
    runtime = tmp_path / "unfreezable-runc"
    runtime.write_text(f"#!/bin/sh\ncase \" $* \" in *\" pause \"*|*\" kill \"*) "
                       f"echo 'cannot freeze' >&2; exit 1;; esac\nexec {shutil.which('runc')} \"$@\"\n")
    runtime.chmod(0o755)
    bb.ok("run", "-d", "busybox", "unfrozen", "--", "sleep", "30", env={"DIST_RUNTIME": str(runtime)})
    r = bb("task", "pause", "unfrozen")
    assert (r.code, r.stderr) == (1, "dist: error: task unfrozen: cannot freeze\n")
    r = bb("task", "kill", "--all", "unfrozen")
    assert (r.code, r.stderr) == (1, "dist: error: task unfrozen: cannot freeze\n")
    assert tasks(bb)["unfrozen"]["status"] == "running"
    bb.ok("c", "rm", "-f", "unfrozen", timeout=TIMEOUT)


def test_a_detached_task_whose_cli_died_before_the_report_keeps_its_shim(bb, tmp_path):
    """``run -d`` killed while its shim starts the task: the shim's report meets a closed pipe.
    It died of that EPIPE (a traceback in shim.log) and left the task running with no shim."""
    mark = tmp_path / "starting"
    runtime = tmp_path / "slow-runc"
    runtime.write_text(f"#!/bin/sh\ncase \" $* \" in *\" run \"*) touch {mark}; sleep 1;; esac\n"
                       f"exec {shutil.which('runc')} \"$@\"\n")
    runtime.chmod(0o755)
    env = {**os.environ, "DIST_NAMESPACE": "default", "DIST_RUNTIME": str(runtime)}
    with subprocess.Popen(_argv(bb, "run", "-d", "busybox", "unheard", "--", "sleep", "30"), env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as cli:
        wait_for(mark.exists, "the runtime to be starting the task")
        cli.kill()
    wait_for((bb.state / "default" / "unheard" / "init.pid").exists, "the task to start")
    time.sleep(0.5)  # the shim reports (to nobody) and serves
    assert tasks(bb)["unheard"]["status"] == "running"
    assert "Traceback" not in (bb.root / "tasks" / "default" / "unheard" / "shim.log").read_text()
    bb.ok("c", "rm", "-f", "unheard", timeout=TIMEOUT)


def test_an_interrupt_before_a_foreground_shim_serves_takes_its_claim_away(bb, monkeypatch):
    """^C or SIGTERM between the claim and the shim's start left the task directory naming dist
    itself as the shim, and the root filesystem mounted: run --rm's removal then waited for dist
    to bury its own task and SIGKILLed dist (exit 137), leaving the container."""
    from dist_tool import shims, tasks
    from dist_tool.session import Session

    bb.ok("c", "create", "busybox", "claimed", "--", "true")
    checked = tasks._mount_checked

    def mounted_then_interrupted(cfg, container):
        checked(cfg, container)
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "_mount_checked", mounted_then_interrupted)
    session = Session(root=str(bb.root), state=str(bb.state))
    with pytest.raises(KeyboardInterrupt):
        tasks.start_foreground(session, "claimed")
    assert not os.path.exists(shims.task_dir(session, "claimed"))
    session.close()
    assert_clean(bb)
    bb.ok("c", "rm", "-f", "claimed", timeout=TIMEOUT)


@pytest.mark.parametrize("when", ["before-bundle", "after-bundle"])
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_a_container_rm_after_a_start_read_the_container_makes_the_start_not_find_it(bb, monkeypatch, when,
                                                                                     detach):
    """rm between start's read of the container and its claim saw no task and removed the container:
    start then failed on the snapshot it had read ("snapshot ... not found") or on the mount or
    runc's mkdir in a root that was gone (125). The start now finds the container gone (3)."""
    from dist_tool import shims, tasks
    from dist_tool.errors import NotFound
    from dist_tool.session import Session

    cid = f"rmrace-{when}-{int(detach)}"
    bb.ok("c", "create", "busybox", cid, "--", "sleep", "30")
    bundle = tasks._bundle

    def bundle_with_rm(*args, **kwargs):
        if when == "before-bundle":
            bb.ok("c", "rm", cid)
        cfg = bundle(*args, **kwargs)
        if when == "after-bundle":
            bb.ok("c", "rm", cid)
        return cfg

    monkeypatch.setattr(tasks, "_bundle", bundle_with_rm)
    session = Session(root=str(bb.root), state=str(bb.state))
    try:
        with pytest.raises(NotFound) as raised:
            if detach:
                tasks.start_detached(session, cid)
            else:
                tasks.start_foreground(session, cid)
        assert (raised.value.what, raised.value.which) == ("container", cid)
        assert not os.path.exists(shims.task_dir(session, cid))
    finally:
        session.close()
    assert bb("c", "info", cid).code == 3
    assert_clean(bb)


@pytest.mark.parametrize("force", [False, True], ids=["rm", "rm-f"])
def test_a_start_that_claims_the_task_after_rm_looked_makes_rm_refuse_or_kill_it(bb, monkeypatch, force):
    """A start between rm's look for a task and its transaction: rm removed the record and the
    snapshot of a task that then ran on (its mount and runtime state left to nobody). Now rm
    sees the claim in its transaction: without -f it refuses (4), with -f it kills the task."""
    from dist_tool import containers
    from dist_tool.errors import Conflict
    from dist_tool.session import Session

    cid = f"startrace-{int(force)}"
    bb.ok("c", "create", "busybox", cid, "--", "sleep", "30")
    looked = containers.task_alive
    started = []

    def looked_then_started(session, container_id):
        alive = looked(session, container_id)
        if not started:
            started.append(bb.ok("task", "start", "-d", cid, timeout=TIMEOUT))
        return alive

    monkeypatch.setattr(containers, "task_alive", looked_then_started)
    session = Session(root=str(bb.root), state=str(bb.state))
    try:
        removed, _, error = containers.remove(session, [cid], force=force)
    finally:
        session.close()
    assert started
    if force:
        assert (removed, error) == ([cid], None)
        assert bb("c", "info", cid).code == 3
        assert cid not in tasks(bb)
    else:
        assert removed == [] and isinstance(error, Conflict)
        assert tasks(bb)[cid]["status"] == "running"
        bb.ok("c", "rm", "-f", cid, timeout=TIMEOUT)
    assert_clean(bb)


def test_force_never_kills_the_cli_named_as_a_foreground_shim(tmp_path):
    from dist_tool import shims
    from dist_tool.proc import process_start

    pid_file = tmp_path / "shim.pid"
    pid_file.write_text(f"{os.getpid()} {process_start(os.getpid())}\n")
    assert shims.sigkill_recorded(str(pid_file)) is False  # and this test is still alive


def test_run_rm_detached_removes_the_container_when_the_runtime_fails(bb, tmp_path):
    env = _runtime_that(tmp_path, "failing-runc", "exit 1")
    r = bb("run", "--rm", "-d", "busybox", "nostart", "--", "true", env=env, timeout=TIMEOUT)
    assert r.code == 125
    assert bb("c", "info", "nostart").code == 3


def test_dists_own_failures_exit_125_and_missing_tasks_3(bb):
    assert bb("run", "--rm", "nosuch-image", "x", "--", "true").code == 125
    bb.ok("c", "create", "busybox", "idle")
    r = bb("task", "wait", "idle")
    assert r.code == 3 and r.stderr.startswith("dist: error: task idle: not found")
    assert bb("task", "kill", "idle").code == 3
    assert bb("task", "exec", "idle", "--exec-id", "e", "--", "true").code == 3
    assert bb("task", "logs", "idle").code == 3
    assert bb("task", "kill", "-s", "SIGNOPE", "idle").code == 2
    for args in (["exec", "idle", "--exec-id", "bad id!", "--", "true"], ["kill", "idle", "--exec-id", "../e"]):
        r = bb("task", *args)  # exec IDs follow the identifier rule, as containerd's do
        assert r.code == 2 and r.stderr.startswith("dist: error: exec id "), r.stderr
    r = bb("run", "--rm", "busybox", "idle", "--", "true")
    assert r.code == 125 and "already exists" in r.stderr
    bb.ok("c", "rm", "idle")
    # A container that does not exist never had a task either (SPEC): wait and exec said 125.
    for args in (["wait", "idle"], ["exec", "idle", "--exec-id", "e", "--", "true"]):
        r = bb("task", *args)
        assert (r.code, r.stderr) == (3, "dist: error: container idle: not found\n"), args
    assert bb("task", "start", "idle").code == 125  # its own failure, as podman start's


def test_foreground_stdio_is_attached(bb):
    r = bb("run", "--rm", "busybox", "io", "--", "sh", "-c", "cat; echo err >&2", input=b"hello\n", timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (0, "hello\n", "err\n")


def test_foreground_run_forwards_signals_and_keeps_last_exit(bb, tmp_path):
    argv = _argv(bb, "run", "busybox", "fwd", "--", "sh", "-c",
                 "trap 'exit 42' TERM; echo up; while :; do sleep 0.05; done")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline() == b"up\n"
        assert tasks(bb)["fwd"]["shimPid"] == proc.pid  # a foreground task's shim is its CLI
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 42
    finally:
        proc.kill()
        proc.wait()
    assert last_exit(bb, "fwd")["status"] == 42
    assert bb("task", "wait", "fwd").code == 42
    bb.ok("c", "rm", "fwd")


# ---------------------------------------------------------------- detached tasks


def test_detached_task_lives_on_and_every_command_works_on_it(bb):
    script = "echo started; while :; do sleep 0.1; done"
    bb.ok("run", "-d", "busybox", "web", "--", "sh", "-c", script, timeout=TIMEOUT)
    # New invocations from here on: the CLI that started it is gone.
    t = tasks(bb)["web"]
    assert set(t) == {"id", "pid", "status", "shimPid", "startedAt"}
    assert t["status"] == "running" and t["startedAt"].endswith("Z")
    assert os.path.exists(f"/proc/{t['pid']}") and os.path.exists(f"/proc/{t['shimPid']}")
    assert os.getsid(t["shimPid"]) != os.getsid(0)  # a session of its own: no terminal ties it to a CLI
    assert bb.ok("task", "ls", "-q").lines == ["web"]
    assert bb.ok("task", "ls", "-q", "status==running", "id==web").lines == ["web"]
    assert bb.ok("task", "ls", "-q", "status==paused").lines == []
    assert bb("task", "ls", "status=").code == 2
    wait_for(lambda: "started" in bb.ok("task", "logs", "web").stdout, "the log")

    pids = [p["pid"] for p in bb.ok("task", "ps", "web", "--json").json]
    assert t["pid"] in pids
    # SPEC: a command that lists things takes -q, identifiers (here pids) one per line.
    assert str(t["pid"]) in bb.ok("task", "ps", "-q", "web").lines
    assert all(line.isdigit() for line in bb.ok("task", "ps", "--quiet", "web").lines)
    r = bb("task", "exec", "web", "--exec-id", "e1", "--", "sh", "-c", "echo from-exec; exit 5")
    assert (r.code, r.stdout) == (5, "from-exec\n")
    r = bb("task", "exec", "web", "--exec-id", "e2", "--", "nosuch")
    assert (r.code, r.stderr) == (127, 'dist: error: task web: exec: "nosuch": executable file not found in $PATH\n')
    bb.ok("task", "exec", "-d", "web", "--exec-id", "e3", "--", "sh", "-c", "echo exec-to-log")
    wait_for(lambda: "exec-to-log" in bb.ok("task", "logs", "web").stdout, "the exec's output in the log")

    bb.ok("task", "pause", "web")
    assert tasks(bb)["web"]["status"] == "paused"
    assert bb("task", "pause", "web").code == 4
    bb.ok("task", "resume", "web")
    assert tasks(bb)["web"]["status"] == "running"

    assert bb("task", "rm", "web").code == 4  # running: only with -f
    bb.ok("task", "kill", "-s", "KILL", "web")
    r = bb("task", "wait", "web", timeout=TIMEOUT)
    assert (r.code, r.stdout) == (137, "137\n")
    assert_clean(bb)
    assert last_exit(bb, "web")["status"] == 137
    assert bb("task", "wait", "web").code == 137  # after the exit: lastExit at once
    assert "started" in bb.ok("task", "logs", "web").stdout  # the last detached run's log
    bb.ok("c", "rm", "web")


def test_task_logs_into_a_full_stdout_names_it(bb):
    """``dist task logs ID > /dev/full`` said "I/O error: [Errno 28] No space left on device"."""
    bb.ok("run", "-d", "busybox", "logfull", "--", "sh", "-c", "echo to-the-log", timeout=TIMEOUT)
    wait_for(lambda: "to-the-log" in bb.ok("task", "logs", "logfull").stdout, "the log")
    with open("/dev/full", "wb") as full:
        result = subprocess.run(_argv(bb, "task", "logs", "logfull"), stdout=full, stderr=subprocess.PIPE,
                                timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (1, b"dist: error: stdout: No space left on device\n")
    bb.ok("c", "rm", "-f", "logfull", timeout=TIMEOUT)


def test_logs_follow_and_log_file_option(bb, tmp_path):
    log = tmp_path / "out.log"
    bb.ok("run", "-d", "--log", str(log), "busybox", "lf", "--", "sh", "-c",
          "for i in 1 2 3; do echo line $i; sleep 0.1; done; exit 3")
    r = bb("task", "logs", "-f", "lf", timeout=TIMEOUT)
    assert r.stdout == "line 1\nline 2\nline 3\n"
    assert log.read_text() == r.stdout
    assert bb("task", "wait", "lf").code == 3
    bb.ok("c", "rm", "lf")
    assert not (bb.root / "tasks" / "default" / "lf").exists()  # the log link goes with the container
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no reader: opening it would block the shim for good
    r = bb("run", "-d", "--log", str(fifo), "busybox", "lf", "--", "true", timeout=TIMEOUT)
    assert r.code == 2 and r.stderr.startswith("dist: error: --log ") and r.stderr.count("\n") == 1, r.stderr
    assert "lf" not in bb.ok("c", "ls", "-q").lines  # refused before the container was created
    # Without -d the output goes to the terminal: --log was silently dropped.
    for args in (["run", "--log", str(log), "busybox", "lf", "--", "true"], ["task", "start", "--log", str(log), "lf"]):
        r = bb(*args, timeout=TIMEOUT)
        assert (r.code, r.stderr) == (2, f"dist: error: --log {log}: is for a detached task (-d); a foreground one "
                                         "writes to the terminal\n"), args
    assert "lf" not in bb.ok("c", "ls", "-q").lines


@pytest.mark.parametrize("own_file", [False, True], ids=["store-log", "log-file"])
def test_a_refused_second_start_keeps_the_running_tasks_log(bb, tmp_path, own_file):
    log = ["--log", str(tmp_path / "ticks.log")] if own_file else []
    bb.ok("run", "-d", *log, "busybox", "ticking", "--", "sh", "-c",
          "echo first; while :; do sleep 0.1; echo tick; done")
    wait_for(lambda: "first" in bb.ok("task", "logs", "ticking").stdout, "the first line")
    refused = bb("task", "start", "-d", *log, "ticking")
    assert refused.code == 4 and "already exists" in refused.stderr
    before = bb.ok("task", "logs", "ticking").stdout
    assert before.startswith("first\n")
    wait_for(lambda: len(bb.ok("task", "logs", "ticking").stdout) > len(before), "more output in the same log")
    bb.ok("c", "rm", "-f", "ticking", timeout=TIMEOUT)


def test_logs_after_a_null_io_detached_run_are_not_the_runs_before(bb, tmp_path):
    """SPEC: `task logs` prints the log of the last detached run; one with --null-io wrote none, so
    the earlier run's output (in the store's log or a --log file) is not its."""
    own = tmp_path / "own.log"
    bb.ok("c", "create", "busybox", "nul", "--", "sh", "-c", "echo earlier")
    for log in ([], ["--log", str(own)]):
        bb.ok("task", "start", "-d", *log, "nul", timeout=TIMEOUT)
        assert bb("task", "wait", "nul", timeout=TIMEOUT).code == 0
        assert bb.ok("task", "logs", "nul").stdout == "earlier\n"
        bb.ok("task", "start", "-d", "--null-io", "nul", timeout=TIMEOUT)
        assert bb("task", "wait", "nul", timeout=TIMEOUT).code == 0
        r = bb("task", "logs", "nul")
        assert (r.code, r.stdout, r.stderr) == (0, "", "")
    assert own.read_text() == "earlier\n"  # the --log file is the user's: only its own run empties it
    bb.ok("c", "rm", "nul")


def test_logs_of_a_container_whose_tasks_ran_in_the_foreground_are_empty(bb):
    """SPEC: logs exit 3 only when the container never had a task."""
    bb.ok("c", "create", "busybox", "fgl", "--", "echo", "hi")
    assert bb("task", "logs", "fgl").code == 3
    assert bb("task", "start", "fgl", timeout=TIMEOUT).stdout == "hi\n"
    r = bb("task", "logs", "fgl")
    assert (r.code, r.stdout, r.stderr) == (0, "", "")
    bb.ok("c", "rm", "fgl")


def test_an_unexpected_os_error_in_run_is_125_on_one_line(bb, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    r = bb("--state", str(not_a_dir), "run", "--rm", "busybox", "st", "--", "true", timeout=TIMEOUT)
    assert r.code == 125, r.stderr
    assert r.stderr == f"dist: error: file {not_a_dir}/default: Not a directory\n"  # worded as other commands
    assert "st" not in bb.ok("c", "ls", "-q").lines  # --rm cleaned up after the failed start


def test_task_start_of_a_created_container(bb):
    bb.ok("c", "create", "busybox", "ts", "--", "sh", "-c", "echo once; exit 4")
    r = bb("task", "start", "ts", timeout=TIMEOUT)
    assert (r.code, r.stdout) == (4, "once\n")
    bb.ok("task", "start", "-d", "ts")
    assert bb("task", "wait", "ts", timeout=TIMEOUT).code == 4
    assert bb.ok("task", "logs", "ts").stdout == "once\n"
    bb.ok("c", "rm", "ts")


def test_second_start_of_a_live_task_is_a_conflict(bb):
    bb.ok("run", "-d", "busybox", "twice", "--", "sleep", "30")
    r = bb("task", "start", "-d", "twice")  # passes no status through: SPEC's 4 for a conflict
    assert r.code == 4 and "already exists" in r.stderr
    r = bb("task", "start", "twice")  # the foreground start would have: its own failure is 125
    assert r.code == 125 and "already exists" in r.stderr
    assert bb("task", "start", "-d", "nosuch").code == 3
    bb.ok("task", "rm", "-f", "twice")
    assert "twice" not in tasks(bb)
    bb.ok("c", "rm", "twice")


def test_container_rm_needs_force_with_a_live_task(bb):
    bb.ok("run", "-d", "busybox", "crm", "--", "sleep", "30")
    assert bb("c", "rm", "crm").code == 4
    bb.ok("c", "rm", "-f", "crm", timeout=TIMEOUT)
    assert_clean(bb)
    assert bb.ok("c", "ls", "-q").lines == []


def test_a_killed_shim_is_detected_and_cleaned_up(bb):
    bb.ok("run", "-d", "busybox", "orphan", "--", "sleep", "30")
    t = tasks(bb)["orphan"]
    os.kill(t["shimPid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{t['shimPid']}/cmdline") or
             open(f"/proc/{t['shimPid']}/stat").read().split(") ")[1].startswith("Z"), "the shim to die")
    assert "orphan" not in tasks(bb)  # noticed, cleaned up, not reported alive
    assert_clean(bb)
    wait_for(lambda: not os.path.exists(f"/proc/{t['pid']}"), "the init to be killed")
    assert last_exit(bb, "orphan")["status"] == 137
    bb.ok("c", "rm", "orphan")


def test_a_stopped_shim_is_listed_from_the_runtime_and_rm_force_removes_its_task(bb):
    """ctr lists such a task from the runtime too; a forced removal must not wait on it forever."""
    bb.ok("run", "-d", "busybox", "frozen", "--", "sleep", "1000")
    running = tasks(bb)["frozen"]
    os.kill(running["shimPid"], signal.SIGSTOP)
    try:
        listed = tasks(bb)["frozen"]
        assert (listed["pid"], listed["status"], listed["shimPid"]) == (running["pid"], "running", running["shimPid"])
        removed = bb("c", "rm", "-f", "frozen", timeout=TIMEOUT)
        assert (removed.code, removed.stderr) == (0, "")
    finally:
        try:
            os.kill(running["shimPid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert "frozen" not in tasks(bb)
    assert bb("c", "info", "frozen").code == 3


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_an_exec_on_a_stopped_shim_names_the_shim_and_what_to_do(bb, monkeypatch, detach):
    """A SIGSTOPped shim takes the exec's connection (its listen backlog) and never answers: the
    foreground exec failed after 60 s with "I/O error: timed out". The 60 s are shortened here, in
    this process only."""
    from dist_tool import tasks as task_ops
    from dist_tool.errors import Unavailable
    from dist_tool.session import Session

    cid = f"stoppedshim-{int(detach)}"
    bb.ok("run", "-d", "busybox", cid, "--", "sleep", "1000")
    shim = tasks(bb)[cid]["shimPid"]
    monkeypatch.setattr(task_ops, "EXEC_CALL_TIMEOUT", 0.5)
    session = Session(root=str(bb.root), state=str(bb.state))
    null = os.open(os.devnull, os.O_RDWR)
    os.kill(shim, signal.SIGSTOP)
    try:
        with pytest.raises(Unavailable) as raised:
            if detach:
                task_ops.exec_detached(session, cid, "e1", ["sh", "-c", ": > /late"])
            else:
                task_ops.exec_foreground(session, cid, "e1", ["sh", "-c", ": > /late"], stdio=(null, null, null))
    finally:
        os.kill(shim, signal.SIGCONT)
        os.close(null)
        session.close()
    assert str(raised.value) == (f"task {cid}: its shim (pid {shim}) is stopped and did not answer in 0.5 s: "
                                 f"resume it (kill -CONT {shim}) or end the task (dist task rm -f {cid})")
    # Resumed, the shim reads the request its CLI gave up on: it must not start the exec it was
    # told had failed (a foreground one would have written to that CLI's terminal, unasked).
    bb.ok("task", "exec", cid, "--exec-id", "check", "--", "sh", "-c", "sleep 1; test ! -e /late", timeout=TIMEOUT)
    bb.ok("c", "rm", "-f", cid, timeout=TIMEOUT)


def test_task_rm_force_removes_a_task_whose_shim_is_stopped(bb):
    """It asked the shim for the task's status first, and failed (1) when no answer came."""
    bb.ok("run", "-d", "busybox", "stoppedrm", "--", "sleep", "1000")
    shim = tasks(bb)["stoppedrm"]["shimPid"]
    os.kill(shim, signal.SIGSTOP)
    try:
        r = bb("task", "rm", "-f", "stoppedrm", timeout=TIMEOUT)
        assert (r.code, r.stderr) == (0, "")
    finally:
        try:
            os.kill(shim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert "stoppedrm" not in tasks(bb)
    # 255, "nobody saw it exit": its init was SIGKILLed while its shim was stopped (as rm -f does)
    assert last_exit(bb, "stoppedrm")["status"] == 255
    r = bb("task", "rm", "-f", "stoppedrm")
    assert (r.code, r.stderr) == (3, "dist: error: task stoppedrm: not found\n")
    assert_clean(bb)
    bb.ok("c", "rm", "stoppedrm")


def test_a_foreground_exec_of_long_arguments_reaches_the_shim_whole(bb):
    """Its request carries our stdio as descriptors: one sendmsg sent only what the socket's
    buffer took, and the shim waited for the rest of the line until the exec timed out (125)."""
    bb.ok("run", "-d", "busybox", "longargs", "--", "sleep", "30")
    words = ["a" * 100_000] * 4  # 400 kB of arguments: twice a Unix socket's default buffer
    r = bb("task", "exec", "longargs", "--exec-id", "l", "--", "sh", "-c", 'echo "$# ${#1}"', "x", *words,
           timeout=TIMEOUT)
    assert (r.code, r.stdout, r.stderr) == (0, "4 100000\n", "")
    bb.ok("c", "rm", "-f", "longargs", timeout=TIMEOUT)


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_an_exec_too_long_for_the_shim_is_a_usage_error_and_the_task_runs_on(bb, detach):
    """Past the shim's 1 MiB request limit the shim hung up mid-request: -d said the task had
    "exited" (3), the foreground exec "exited while the exec ran" (125); the task ran on."""
    cid = f"toolong-{int(detach)}"
    bb.ok("run", "-d", "busybox", cid, "--", "sleep", "30")
    words = ["a" * 100_000] * 15  # 1.5 MB: under the kernel's 2 MB for arguments, over the shim's 1 MiB
    r = bb("task", "exec", *(["-d"] if detach else []), cid, "--exec-id", "l", "--", "echo", *words,
           timeout=TIMEOUT)
    assert r.code == 2 and r.stderr.startswith("dist: error: exec l: its process (arguments and environment) is ")
    assert r.stderr.endswith(" bytes of JSON, more than a shim takes (1048576)\n") and r.stdout == ""
    assert tasks(bb)[cid]["status"] == "running"
    bb.ok("c", "rm", "-f", cid, timeout=TIMEOUT)


def test_a_foreground_exec_whose_shim_dies_says_so_and_cleans_up(bb):
    bb.ok("run", "-d", "busybox", "execdeath", "--", "sleep", "1000")
    shim = tasks(bb)["execdeath"]["shimPid"]
    execing = subprocess.Popen(_argv(bb, "task", "exec", "execdeath", "--exec-id", "long", "--", "sleep", "1000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(bb.ok("task", "ps", "execdeath", "--json").json) >= 2, "the exec to run")
        os.kill(shim, signal.SIGKILL)
        out, err = execing.communicate(timeout=TIMEOUT)
    finally:
        execing.kill()
    assert (execing.returncode, err) == (125, "dist: error: task execdeath: its shim died while the exec ran"
                                              " (cleaned up)\n")
    assert_clean(bb)
    assert last_exit(bb, "execdeath")["status"] == 137
    bb.ok("c", "rm", "execdeath")


def test_a_foreground_exec_sees_a_shim_that_dies_slowly_die(bb):
    """The exec's connection ends as the killed shim's descriptors close, a moment before the
    kernel shows its process gone. The exec judged the shim at once, took it for alive, said the
    task "exited", and left the task running with a dead shim (and the exec holding our pipes).
    Here shim.pid names a process that outlives the shim by half a second: that moment, longer."""
    from dist_tool.proc import process_start

    bb.ok("run", "-d", "busybox", "slowdeath", "--", "sleep", "1000")
    shim = tasks(bb)["slowdeath"]["shimPid"]
    execing = subprocess.Popen(_argv(bb, "task", "exec", "slowdeath", "--exec-id", "long", "--", "sleep", "1000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(bb.ok("task", "ps", "slowdeath", "--json").json) >= 2, "the exec to run")
        with subprocess.Popen(["sleep", "0.5"]) as dying:
            pid_file = bb.state / "default" / "slowdeath" / "shim.pid"
            (pid_file.parent / ".shim.pid.test").write_text(f"{dying.pid} {process_start(dying.pid)}\n")
            os.rename(pid_file.parent / ".shim.pid.test", pid_file)
            os.kill(shim, signal.SIGKILL)
            out, err = execing.communicate(timeout=TIMEOUT)
    finally:
        execing.kill()
    assert (execing.returncode, err) == (125, "dist: error: task slowdeath: its shim died while the exec ran"
                                              " (cleaned up)\n")
    assert_clean(bb)
    bb.ok("c", "rm", "slowdeath")


def test_every_waiter_of_a_task_whose_shim_died_gets_its_status(bb):
    """One waiter cleans up; the others must wait for it to record lastExit, not report that
    the container never ran a task."""
    bb.ok("run", "-d", "busybox", "waiters", "--", "sleep", "30")
    t = tasks(bb)["waiters"]
    waiters = [subprocess.Popen(_argv(bb, "task", "wait", "waiters"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(4)]
    time.sleep(1.5)  # all of them connected and waiting
    os.kill(t["shimPid"], signal.SIGKILL)
    results = [(w.wait(timeout=TIMEOUT), w.communicate()[1].decode()) for w in waiters]
    assert results == [(137, "")] * 4
    bb.ok("c", "rm", "waiters")


def test_waiters_that_come_after_the_shim_died_get_its_status(bb):
    """A waiter that finds the task already renamed to a grave by another's cleanup waits for
    that cleanup's lastExit too (it said the container never ran a task)."""
    for _ in range(3):
        bb.ok("run", "-d", "busybox", "latewait", "--", "sleep", "30")
        shim = tasks(bb)["latewait"]["shimPid"]
        os.kill(shim, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{shim}"), "the shim to be gone")  # noqa: B023
        waiters = []
        for _ in range(8):  # staggered, so that some arrive while the first one's cleanup runs
            waiters.append(subprocess.Popen(_argv(bb, "task", "wait", "latewait"), stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE))
            time.sleep(0.02)
        results = [(w.wait(timeout=TIMEOUT), w.communicate()[1].decode()) for w in waiters]
        assert results == [(137, "")] * 8
        bb.ok("c", "rm", "latewait")


def test_sigkill_reaches_a_paused_task(bb):
    """cgroup v1 keeps a signal to a frozen process pending; runc thaws for SIGKILL, as ctr's
    kill does through it."""
    bb.ok("run", "-d", "busybox", "pausekill", "--", "sleep", "30")
    bb.ok("task", "pause", "pausekill")
    bb.ok("task", "kill", "-s", "KILL", "pausekill")
    assert bb("task", "wait", "pausekill", timeout=TIMEOUT).code == 137
    bb.ok("c", "rm", "pausekill")


def test_run_rm_is_honoured_when_its_shim_dies(bb):
    """Whoever cleans up after a dead shim also does what --rm asked, detached or not."""
    bb.ok("run", "--rm", "-d", "busybox", "rmdead", "--", "sleep", "30")
    os.kill(tasks(bb)["rmdead"]["shimPid"], signal.SIGKILL)
    wait_for(lambda: "rmdead" not in tasks(bb), "the dead shim's task to be cleaned up")
    wait_for(lambda: "rmdead" not in bb.ok("c", "ls", "-q").lines, "the container to be removed")
    with subprocess.Popen(_argv(bb, "run", "--rm", "busybox", "rmdead2", "--", "sleep", "30"),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as cli:  # the foreground shim
        wait_for(lambda: "rmdead2" in tasks(bb), "the foreground task to run")
        cli.kill()
    wait_for(lambda: "rmdead2" not in tasks(bb), "the dead CLI's task to be cleaned up")
    wait_for(lambda: "rmdead2" not in bb.ok("c", "ls", "-q").lines, "the container to be removed")


def test_a_shim_killed_after_the_exit_it_saw_leaves_that_status(bb, tmp_path):
    """Killed between reaping the init and recording lastExit (here: while its runtime deletes
    the container), the shim has noted the status; the cleanup records it, not 255."""
    mark = tmp_path / "deleting"
    runtime = tmp_path / "slow-delete-runc"
    runtime.write_text(f"#!/bin/sh\ncase \" $* \" in\n"
                       f"  *\" delete \"*) [ -e {mark} ] || {{ echo $$ >{mark}; exec sleep 60; }};;\n"
                       f"esac\nexec {shutil.which('runc')} \"$@\"\n")
    runtime.chmod(0o755)
    bb.ok("run", "-d", "busybox", "noted", "--", "sh", "-c", "exit 5", env={"DIST_RUNTIME": str(runtime)})
    wait_for(lambda: mark.exists() and mark.read_text().strip(), "the shim to delete the exited task")
    shim = shim_pids(bb)
    assert len(shim) == 1
    os.kill(shim[0], signal.SIGKILL)
    os.kill(int(mark.read_text()), signal.SIGKILL)  # the runtime's delete it was waiting for
    waited = bb("task", "wait", "noted", timeout=TIMEOUT)
    assert waited.code == 5
    assert last_exit(bb, "noted")["status"] == 5
    bb.ok("c", "rm", "noted")


@pytest.mark.parametrize("cleaner", ["exited", "pid-reused"])
def test_a_cleanup_whose_command_was_killed_is_finished_by_the_next(bb, cleaner):
    """The cleaner renames a dead task's directory to a grave first; killed right after, it
    leaves the grave with the task's mount, process and runtime state. The next command
    finishes the job, and the ID can start a task again; also when another process now has
    the dead cleaner's pid (the grave names its start time too)."""
    bb.ok("run", "-d", "busybox", "grave", "--", "sleep", "30")
    t = tasks(bb)["grave"]
    os.kill(t["shimPid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{t['shimPid']}/cmdline") or
             open(f"/proc/{t['shimPid']}/stat").read().split(") ")[1].startswith("Z"), "the shim to die")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has exited: the cleaner that was killed
    pid = gone.pid if cleaner == "exited" else os.getpid()  # ours: alive, but started at another time
    ns = bb.state / "default"
    os.rename(ns / "grave", ns / f".dead-grave-{pid}-1.2")
    assert os.path.exists(f"/proc/{t['pid']}")  # what the killed cleaner left running
    assert "grave" not in tasks(bb)
    assert_clean(bb)
    assert not any(n.startswith(".dead-") for n in os.listdir(ns))
    bb.ok("task", "start", "-d", "grave")  # the runtime no longer knows the ID
    bb.ok("c", "rm", "-f", "grave", timeout=TIMEOUT)


# ---------------------------------------------------------------- terminal


def _in_pty(argv: list[str], rows: int = 40, cols: int = 100, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Runs argv on a new pseudo-terminal of that size: (exit status, what it printed)."""
    pid, master = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_tty_gives_a_terminal_of_the_window_size(bb):
    base = _argv(bb)
    code, out = _in_pty([*base, "run", "--rm", "-t", "busybox", "tty1", "--", "sh", "-c",
                         "tty; stty size; echo TERM=$TERM; exit 3"])
    assert code == 3, out
    assert "/dev/pts/" in out and "40 100" in out and "TERM=xterm" in out
    bb.ok("run", "-d", "busybox", "tty2", "--", "sleep", "30")
    code, out = _in_pty([*base, "task", "exec", "-t", "tty2", "--exec-id", "t", "--", "sh", "-c",
                         "tty; stty size; exit 6"], rows=30, cols=90)
    assert code == 6 and "/dev/pts/" in out and "30 90" in out, out
    bb.ok("c", "rm", "-f", "tty2")


def _argv(d: Dist, *args: str) -> list[str]:
    return [sys.executable, "-m", "dist_tool", "--root", str(d.root), "--state", str(d.state), *args]


def _status_into_head(argv: list[str]) -> int:
    """``argv < /dev/null | head -c 4``: dist's exit status once head has left."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        head = proc.stdout.read(4)
        proc.stdout.close()  # the reader leaves
        status = proc.wait(timeout=TIMEOUT)
        assert len(head) == 4, proc.stderr.read().decode(errors="replace")
        return status


def test_when_a_terminals_reader_leaves_the_terminal_hangs_up(bb):
    """Without -t, ``yes | head`` ends yes with EPIPE. With -t the shim (the foreground CLI) or
    the exec's CLI copies the terminal; its reader leaving hangs the terminal up, so yes's writes
    fail (EIO: busybox exits 1), and the task is cleaned up, not abandoned behind a CLI that
    exited 0 with the task still running."""
    assert _status_into_head(_argv(bb, "run", "--rm", "-t", "busybox", "ttyhead", "--", "busybox", "yes")) == 1
    assert "ttyhead" not in bb.ok("c", "ls", "-q").lines  # --rm done
    bb.ok("container", "create", "--tty", "busybox", "ttyhead2", "--", "busybox", "yes")
    assert _status_into_head(_argv(bb, "task", "start", "ttyhead2")) == 1
    assert last_exit(bb, "ttyhead2")["status"] == 1
    bb.ok("run", "-d", "busybox", "ttyhead3", "--", "sleep", "30")
    # an exec is no container init: the hang-up's SIGHUP reaches it
    exec_argv = _argv(bb, "task", "exec", "-t", "ttyhead3", "--exec-id", "y", "--", "busybox", "yes")
    assert _status_into_head(exec_argv) == 128 + signal.SIGHUP
    assert tasks(bb)["ttyhead3"]["status"] == "running"  # the exec ended, not the task
    bb.ok("c", "rm", "-f", "ttyhead2", "ttyhead3", timeout=TIMEOUT)


def test_a_detached_shim_keeps_none_of_its_clis_descriptors(bb):
    """A pipe the CLI inherited (a harness's, a make jobserver's) must not stay open for the
    task's life: its reader would wait for EOF until the task exits."""
    r, w = os.pipe()
    try:
        subprocess.run(_argv(bb, "run", "-d", "busybox", "fds", "--", "sleep", "30"), pass_fds=(w,),
                       check=True, capture_output=True, timeout=TIMEOUT)
        os.close(w)
        w = -1
        assert select.select([r], [], [], 5)[0] and os.read(r, 1) == b""  # EOF: nobody holds it
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    bb.ok("c", "rm", "-f", "fds", timeout=TIMEOUT)


def test_detached_tty_output_goes_to_the_log(bb):
    bb.ok("run", "-d", "-t", "busybox", "tty3", "--", "sh", "-c", "tty; exit 2")
    assert bb("task", "wait", "tty3", timeout=TIMEOUT).code == 2
    assert "/dev/pts/" in bb.ok("task", "logs", "tty3").stdout
    bb.ok("c", "rm", "tty3")


# ---------------------------------------------------------------- many at once


def test_twenty_tasks_started_in_parallel_all_run_and_clean_up(bb):
    ids = [f"par{i:02d}" for i in range(20)]

    def start(cid: str) -> tuple[int, str]:
        r = bb("run", "-d", "busybox", cid, "--", "sh", "-c", f"echo hello {cid}; sleep 1; exit {int(cid[3:])}",
               timeout=120)
        return r.code, r.stderr

    with ThreadPoolExecutor(20) as pool:
        assert [r for r in pool.map(start, ids) if r[0] != 0] == []
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda cid: bb("task", "wait", cid, timeout=120).code, ids))
    assert statuses == list(range(20))
    assert_clean(bb)
    for cid in ids:
        assert bb.ok("task", "logs", cid).stdout == f"hello {cid}\n"
    bb.ok("c", "rm", *ids)


# ---------------------------------------------------------------- the shim itself


def test_the_shim_starts_on_the_standard_library_alone():
    """A detached shim is ``python -I -S``: no site-packages, and none of the heavy stdlib modules
    (socket, signal and subprocess build enums: a megabyte each of private memory per shim; os
    loads _collections_abc for its environ: a quarter of one)."""
    package_parent = str(Path(__file__).resolve().parents[2])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import dist_tool.shim.__main__, dist_tool.shim.server;"
            "print(\" \".join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, package_parent], capture_output=True, text=True,
                         check=True).stdout
    modules = set(out.split())
    assert {m for m in modules if m.startswith("dist_tool")} <= {
        "dist_tool", "dist_tool.proc", "dist_tool.shim", "dist_tool.shim.__main__", "dist_tool.shim.host",
        "dist_tool.shim.proto", "dist_tool.shim.runc", "dist_tool.shim.server"}
    assert not modules & {"typer", "rich", "sqlite3", "socket", "signal", "subprocess", "threading", "enum",
                          "json", "ctypes", "os", "_collections_abc"}


def _run_with_stdin(bb, stdin, *args):
    cmd = _argv(bb, *args)
    return subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("source", ["devnull", "file", "pipe", "pipe-no-newline"])
def test_a_terminal_task_gets_stdin_from_anything_and_its_end(bb, tmp_path, source):
    """-t with stdin that is not a terminal: /dev/null and regular files (which epoll refuses),
    pipes; the end of the input reaches the task as the terminal's end of file (^D, as script(1))."""
    data = {"devnull": b"", "file": b"a\nb\n", "pipe": b"a\nb\n", "pipe-no-newline": b"a\nb"}[source]
    args = ("run", "--rm", "-t", "busybox", f"tin-{source}", "--", "wc", "-l")
    if source == "devnull":
        r = _run_with_stdin(bb, subprocess.DEVNULL, *args)
    elif source == "file":
        (tmp_path / "in").write_bytes(data)
        with open(tmp_path / "in", "rb") as f:
            r = _run_with_stdin(bb, f, *args)
    else:
        r = subprocess.run(_argv(bb, *args), input=data, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    # wc's count comes after the terminal's echo of the input ("a\r\nb" then "1" for the last case)
    assert r.stdout.rstrip().endswith(b"%d" % data.count(b"\n")), r.stdout


@pytest.mark.parametrize("source", ["devnull", "pipe", "pipe-no-newline"])
def test_a_terminal_exec_gets_the_end_of_its_stdin(bb, source):
    """``task exec -t`` with stdin that is not a terminal: its end reaches the exec as the
    terminal's end of file, as it reaches a ``run -t`` task; else ``cat`` waits forever."""
    data = {"devnull": b"", "pipe": b"a\nb\n", "pipe-no-newline": b"a\nb"}[source]
    bb.ok("run", "-d", "busybox", f"xin-{source}", "--", "sleep", "30")
    argv = _argv(bb, "task", "exec", "-t", f"xin-{source}", "--exec-id", "w", "--", "wc", "-l")
    if source == "devnull":
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    else:
        r = subprocess.run(argv, input=data, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith(b"%d" % data.count(b"\n")), r.stdout
    bb.ok("c", "rm", "-f", f"xin-{source}", timeout=TIMEOUT)


def test_a_terminal_exec_takes_more_input_than_the_terminal_holds(bb):
    """The CLI wrote input to the exec's terminal with a blocking write while not reading its
    output: cat's echo and output filled the terminal, cat stopped reading, and both waited for
    each other forever. run -t (the shim) never did; exec -t must not either."""
    bb.ok("run", "-d", "busybox", "xbig", "--", "sleep", "30")
    data = b"".join(b"%d\n" % i for i in range(100_000))  # 600 kB: far past a terminal's 4 kB
    r = subprocess.run(_argv(bb, "task", "exec", "-t", "xbig", "--exec-id", "c", "--", "cat"), input=data,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(b"\n99999\r\n")
    bb.ok("c", "rm", "-f", "xbig", timeout=TIMEOUT)


def test_null_io_discards_a_terminal_tasks_output_too(bb):
    """--null-io sends stdio to /dev/null; with -t the shim still copied the terminal to ours."""
    r = bb("run", "--rm", "--null-io", "busybox", "nullio", "--", "echo", "hi", timeout=TIMEOUT)
    assert (r.code, r.stdout) == (0, "")
    r = bb("run", "--rm", "-t", "--null-io", "busybox", "nullio-t", "--", "sh", "-c", "echo hi; exit 3",
           timeout=TIMEOUT)
    assert (r.code, r.stdout) == (3, "")


def test_a_short_terminal_exec_leaves_its_task_running(bb):
    """The exec's terminal is closed as it exits; a stale event for it must not stop the shim."""
    bb.ok("run", "-d", "busybox", "tx", "--", "sleep", "30")
    for i in range(5):
        bb.ok("task", "exec", "tx", "--exec-id", f"e{i}", "-t", "-d", "--", "echo", "hi")
    time.sleep(0.5)
    assert tasks(bb)["tx"]["status"] == "running"
    bb.ok("c", "rm", "-f", "tx", timeout=TIMEOUT)


def test_rm_force_removes_a_paused_task(bb):
    bb.ok("run", "-d", "busybox", "pz", "--", "sleep", "30")
    bb.ok("task", "pause", "pz")
    assert tasks(bb)["pz"]["status"] == "paused"
    started = time.monotonic()
    bb.ok("c", "rm", "-f", "pz", timeout=TIMEOUT)
    assert time.monotonic() - started < 5  # not the 10 s wait for a SIGKILL the frozen init never takes
    assert "pz" not in tasks(bb)


def test_a_closed_stdout_is_dev_null_not_a_crash(bb):
    r = subprocess.run(f"exec {sys.executable} -m dist_tool --root {bb.root} --state {bb.state} "
                       "run --rm busybox so -- echo hi >&-", shell=True, capture_output=True, timeout=TIMEOUT)
    assert (r.returncode, r.stderr) == (0, b"")


@pytest.fixture
def small_store(tmp_path):
    """A store on an 8 MiB tmpfs holding busybox, its STATE on another file system (as /run is)."""
    with tmpfs(tmp_path / "small", "8m") as small:
        d = Dist(small / "root")
        d.state = tmp_path / "state"
        d.ok("images", "import", "--rootfs", str(make_busybox_rootfs(tmp_path / "rootfs")), "--name", "busybox",
             "--config-cmd", "/bin/sh", "--progress", "none")
        yield d


FILL_AND_EXIT_7 = "dd if=/dev/zero of=/big bs=1M count=64; exit 7"


def test_a_task_that_fills_the_store_disk_has_its_exit_recorded(small_store):
    """The shim records lastExit at once on a disk the task filled: whatever room its SQLite files
    need is there, since the store gives its reserve up (README: a full disk). Without the reserve
    this depended on what the shim's connection had already made, and the exit was at times only
    kept in STATE (the next test)."""
    d = small_store
    assert d("run", "busybox", "filler", "--", "sh", "-c", FILL_AND_EXIT_7, timeout=TIMEOUT).code == 7
    assert d.ok("container", "info", "filler", "--json").json["lastExit"]["status"] == 7
    assert not list(d.state.rglob(".exit-*"))


def test_an_exit_the_full_store_would_not_take_is_kept_and_recorded_later(small_store):
    """A task that filled the store's disk exited 7; its shim could not write lastExit, and every
    'task wait' after it said the container never ran a task (exit 3). The shim keeps the exit in
    STATE; once there is room again, wait returns it and the store has it. The reserve is spent
    first (a disk that filled, was given the reserve and filled again), so nothing can be written."""
    d = small_store
    disk = d.root.parent
    filler = fill(disk)
    d.ok("images", "-q")  # gives the reserve up
    assert not (d.root / "metadata.reserve").exists()
    os.unlink(filler)
    fill(disk, leave=512 << 10)  # room to create the container, not to make the reserve again
    r = d("run", "busybox", "filler", "--", "sh", "-c", FILL_AND_EXIT_7, timeout=TIMEOUT)
    assert r.code == 7, r.stderr
    assert "recording lastExit of filler" in r.stderr  # the shim's log: the store refused it
    os.unlink(filler)
    for big in (d.root / "snapshots").rglob("big"):
        big.unlink()
    assert d("task", "wait", "filler", timeout=TIMEOUT).stdout.strip() == "7"
    assert d.ok("container", "info", "filler", "--json").json["lastExit"]["status"] == 7
    assert not list(d.state.rglob(".exit-*"))  # recorded: nothing kept any more
    d.ok("container", "rm", "filler")


def test_a_kept_exit_goes_with_its_container_and_never_reaches_a_new_one(bb, tmp_path):
    """An exit kept for a full store is the container's: removing the container drops it, and a
    new container of the same ID never ran a task (SPEC: wait and logs exit 3)."""
    import json as json_

    bb.ok("container", "create", "busybox", "kept")
    kept = bb.state / "default" / ".exit-kept.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json_.dumps({"status": 5, "exitedAt": 1.0}))
    bb.ok("container", "rm", "kept")
    assert not kept.exists()
    kept.write_text(json_.dumps({"status": 5, "exitedAt": 1.0}))  # left by an older dist
    bb.ok("container", "create", "busybox", "kept")
    assert not kept.exists()
    assert bb("task", "wait", "kept", timeout=TIMEOUT).code == 3
    assert bb.ok("container", "info", "kept", "--json").json["lastExit"] is None
    bb.ok("container", "rm", "kept")


def test_an_image_of_hundreds_of_layers_runs(tmp_path):
    """Their absolute lower directories would overflow the one page of options overlay reads."""
    if overlay_supported():
        pytest.skip(f"overlay: {overlay_supported()}")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tar:
        tar.add(rootfs, arcname=".")
    layers = [base.read_bytes()] + [layer([file(f"f{i}", f"{i}\n".encode())]) for i in range(1, 200)]
    image = oci_archive(tmp_path / "many.tar", layers, name="docker.io/library/many:200")
    d = Dist(tmp_path / "root")
    d.ok("--snapshotter", "overlayfs", "images", "import", str(image.archive))
    try:
        r = d("--snapshotter", "overlayfs", "run", "--rm", "many:200", "tall", "--", "cat", "/f1", "/f199",
              timeout=TIMEOUT)
        assert (r.code, r.stdout, r.stderr) == (0, "1\n199\n", "")
    finally:
        _kill_leftovers(d)
    assert_clean(d)
