"""Driving an OCI runtime with runc's command line (runc itself, or whatever ``--runtime`` names).

Every call is synchronous and short. The runtime writes its own failures to a
JSON log (``--log``) as well as to stderr; ``RuntimeFailure`` carries the last
error line and SPEC's exit status for it.
"""

from __future__ import annotations

import posix

from dist_tool.shim import host
from dist_tool.shim.proto import loads

# runc reports why the process could not be started only in words (it has no error codes):
# these are the exec(2) failures of runc 1.1's init, as docker and podman classify them (and ELOOP,
# which dist_tool.executable finds first and calls 126 too).
NOT_FOUND = ("executable file not found", "no such file or directory")
NOT_INVOKABLE = ("permission denied", "not a directory", "exec format error", "is a directory",
                 "too many levels of symbolic links")


INTERRUPTS = (1, 2, 3, 15)  # SIGHUP, SIGINT, SIGQUIT, SIGTERM: a runtime they kill failed no check of its own


class RuntimeFailure(Exception):
    """The runtime refused. ``status`` is SPEC's: 127 not found, 126 cannot be invoked, 125 other."""

    def __init__(self, message: str, status: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def classify(message: str) -> int:
    """SPEC's status for a runtime's failure to start a process (125, 126 or 127)."""
    lowered = message.lower()
    if "exec" in lowered or "starting container process" in lowered or "start container process" in lowered:
        if any(s in lowered for s in NOT_FOUND):
            return 127
        if any(s in lowered for s in NOT_INVOKABLE):
            return 126
    return 125


def _last_error(log_path: str, stderr: bytes) -> str:
    """The runtime's own account of its failure: the last error in its JSON log, else stderr."""
    message = ""
    try:
        with open(log_path, "rb") as f:
            for line in f:
                try:
                    entry = loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = entry.get("msg", "")
    except OSError:
        pass
    if not message:
        lines = stderr.decode(errors="replace").strip().splitlines()
        message = lines[-1] if lines else ""
    for prefix in ("runc create failed: ", "runc run failed: ", "runc exec failed: ",
                   "unable to start container process: "):
        message = message.removeprefix(prefix)
    return message or "the runtime failed without saying why"


def cannot_run(binary: str, error: OSError) -> str:
    """Why ``binary`` could not be executed, in words that do not blame a file that is there."""
    if error.errno == 2 and posix.access(binary, posix.F_OK):  # ENOENT of a script whose #! is missing
        return f"runtime {binary}: cannot be run: the interpreter its #! line names was not found"
    return f"runtime {binary}: cannot be run: {error.strerror or error}"


def read_pid_file(path: str) -> int:
    """The pid the runtime wrote to ``--pid-file``; RuntimeFailure when it exited 0 and wrote none."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        raise RuntimeFailure("the runtime reported success but wrote no process id (--pid-file): "
                             "is it a runtime with runc's command line?") from None


class Runc:
    """One runtime binary and its state directory (``--root``)."""

    def __init__(self, binary: str, root: str, log: str) -> None:
        self.binary = binary
        self.root = root
        self.log = log  # --log FILE: where the runtime writes its errors, truncated before each call

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, "--log", self.log, "--log-format", "json", *args]

    def _call(self, *args: str, stdio: tuple[int, int, int] | None = None, check: bool = True) -> bytes:
        try:
            posix.truncate(self.log, 0)
        except OSError:
            pass
        try:
            if stdio is None:
                status, out, err = host.run(self.argv(*args))
            else:
                status, out, err = host.run(self.argv(*args), *stdio)
        except OSError as e:  # its exec failed: the runtime never ran, so there is no account of its own
            raise RuntimeFailure(cannot_run(self.binary, e)) from None
        if status != 0 and check:
            if status - 128 in INTERRUPTS:  # ^C to the whole process group reached the runtime too
                raise RuntimeFailure(f"interrupted: the runtime was stopped by signal {status - 128}", status)
            message = _last_error(self.log, err)
            raise RuntimeFailure(message, classify(message) if args[0] in ("create", "run", "exec") else 125)
        return out

    def create(self, container_id: str, bundle: str, pid_file: str, stdio: tuple[int, int, int],
               console_socket: str | None = None) -> None:
        """``runc create``: the init process exists, waiting for ``start``; the runtime exits and
        the init becomes our child (we are a subreaper). It inherits ``stdio`` unless a console
        socket is given, where the runtime sends the pty's master."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._call(*args, container_id, stdio=stdio)

    def run_detached(self, container_id: str, bundle: str, pid_file: str, stdio: tuple[int, int, int]) -> None:
        """``runc run --detach``: create and start in one runtime process (one Go start-up less
        than ``create`` + ``start``); the running init becomes our child as the runtime exits."""
        self._call("run", "--detach", "--bundle", bundle, "--pid-file", pid_file, container_id, stdio=stdio)

    def start(self, container_id: str) -> None:
        self._call("start", container_id)

    def exec_detached(self, container_id: str, process_file: str, pid_file: str,
                      stdio: tuple[int, int, int], console_socket: str | None = None) -> None:
        """``runc exec -d``: the process runs and (the runtime having exited) is our child."""
        args = ["exec", "--detach", "--process", process_file, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._call(*args, container_id, stdio=stdio)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        self._call("kill", *(["--all"] if all_processes else []), container_id, str(signal))

    def pause(self, container_id: str) -> None:
        self._call("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._call("resume", container_id)

    def delete(self, container_id: str, force: bool = True) -> None:
        """Removes the runtime's state (and with ``force`` kills what still runs); a container the
        runtime does not know is not an error."""
        try:
            self._call("delete", *(["--force"] if force else []), container_id)
        except RuntimeFailure as e:
            if "does not exist" not in e.message and "not exist" not in e.message:
                raise

    def state(self, container_id: str) -> dict | None:
        """``runc state`` as a dict, or None when the runtime does not know the container."""
        try:
            return loads(self._call("state", container_id))  # type: ignore[return-value]
        except RuntimeFailure as e:
            if "does not exist" in e.message or "not exist" in e.message:
                return None
            raise

    def ps(self, container_id: str) -> list[int]:
        return loads(self._call("ps", "--format", "json", container_id) or b"[]") or []  # type: ignore[return-value]
