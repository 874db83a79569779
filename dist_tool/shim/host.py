"""What the shim asks of the kernel: child subreaper, mount(2), spawning runc, and the few
file and socket calls its modules share.

Standard library only, and its low-level half (no ``subprocess``, ``socket``
or ``signal``: their enums alone cost a detached shim a megabyte of private
memory; nor ``os``, whose ``environ`` mapping loads ``_collections_abc``: a
quarter of a megabyte per shim, where ``posix`` has every call the shim makes).
``ctypes`` is loaded on first use, for prctl(2), mount(2) and umount2(2),
which ``posix`` does not wrap.
"""

from __future__ import annotations

import _socket
import posix
import select
import sys

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2
PAGE_SIZE = posix.sysconf("SC_PAGE_SIZE")
SIGPIPE, SIGXFSZ = 13, 25  # Python ignores these; a spawned runtime must not inherit that
_MOUNT_FLAGS = {
    "ro": (1, True), "rw": (1, False), "nosuid": (2, True), "suid": (2, False), "nodev": (4, True),
    "dev": (4, False), "noexec": (8, True), "exec": (8, False), "sync": (16, True), "async": (16, False),
    "remount": (32, True), "mand": (64, True), "nomand": (64, False), "dirsync": (128, True),
    "noatime": (1024, True), "atime": (1024, False), "nodiratime": (2048, True), "diratime": (2048, False),
    "bind": (4096, True), "rbind": (4096 | 16384, True), "relatime": (1 << 21, True),
    "norelatime": (1 << 21, False), "strictatime": (1 << 24, True),
}
_PROPAGATION = {"private": 1 << 18, "rprivate": (1 << 18) | 16384, "slave": 1 << 19,
                "rslave": (1 << 19) | 16384, "shared": 1 << 20, "rshared": (1 << 20) | 16384}
_libc = None


class HostError(OSError):
    pass


def libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise HostError(err, f"{what}: {posix.strerror(err)}")


def set_child_subreaper() -> None:
    """Orphaned descendants (the task's init once ``runc create`` exits, exec'd processes once
    ``runc exec -d`` exits) become our children, so we can reap them and read their status."""
    _check(libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def mount(mount_type: str, source: str, target: str, options: list[str] | tuple[str, ...]) -> None:
    """mount(2) as ``mount -t TYPE -o OPTIONS SOURCE TARGET`` would do it (one call, plus the
    remount a read-only bind needs)."""
    flags, data, propagation = 0, [], 0
    for option in options:
        if option in _MOUNT_FLAGS:
            bit, on = _MOUNT_FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in _PROPAGATION:
            propagation |= _PROPAGATION[option]
        else:
            data.append(option)
    if mount_type == "bind":
        flags |= 4096
    c = libc()
    data, lower_base = _fit_in_a_page(data, f"mount {source} on {target}")
    raw = ",".join(data).encode() or None
    here = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC) if lower_base else -1
    try:
        if lower_base:
            posix.chdir(lower_base)
        _check(c.mount(source.encode(), target.encode(), mount_type.encode(), flags, raw),
               f"mount {source} on {target}")
    finally:
        if lower_base:
            posix.fchdir(here)
            posix.close(here)
    if flags & 4096 and flags & 1:  # a bind mount ignores MS_RDONLY until remounted
        _check(c.mount(None, target.encode(), None, flags | 32, None), f"remount {target} read-only")
    if propagation:
        _check(c.mount(None, target.encode(), None, propagation, None), f"propagation of {target}")


def _fit_in_a_page(data: list[str], what: str) -> tuple[list[str], str | None]:
    """The kernel reads at most one page of mount options: an overlay of many layers does not fit
    with absolute lower directories. Then (as containerd does) they are named relative to the
    directory they share, which the caller makes the working directory for the mount(2) call.
    Returns the options and that directory (None when they fit as they are)."""
    if len(",".join(data)) < PAGE_SIZE:
        return data, None
    i = next((i for i, o in enumerate(data) if o.startswith("lowerdir=")), None)
    lowers = data[i][len("lowerdir="):].split(":") if i is not None else []
    base = _common_directory(lowers)
    if base is not None:
        cut = len(base.rstrip("/")) + 1
        data = [*data[:i], "lowerdir=" + ":".join(d[cut:] for d in lowers), *data[i + 1:]]
    if len(",".join(data)) >= PAGE_SIZE:
        raise HostError(7, f"{what}: its options do not fit in the kernel's {PAGE_SIZE} bytes"
                           f" ({len(lowers)} lower directories)")
    return data, base


def _common_directory(paths: list[str]) -> str | None:
    """The deepest directory above every one of these absolute paths, if it is not "/"."""
    if not paths or not all(p.startswith("/") for p in paths):
        return None
    parts = [p.split("/") for p in paths]
    shared = 0
    for names in zip(*(p[:-1] for p in parts), strict=False):  # as deep as the shortest
        if any(n != names[0] for n in names):
            break
        shared += 1
    base = "/".join(parts[0][:shared])
    return base if base.strip("/") else None


def mount_all(mounts: list[dict], target: str) -> None:
    """Mounts a snapshotter's ``mounts(key)`` onto ``target``; undoes what it did on failure."""
    done = 0
    try:
        for m in mounts:
            mount(m["type"], m["source"], target, m.get("options") or ())
            done += 1
    except OSError:
        for _ in range(done):
            unmount(target)
        raise


def unmount(target: str) -> bool:
    """Unmounts the top mount on ``target``; lazily if it is busy. False if nothing was mounted."""
    c = libc()
    if c.umount2(target.encode(), 0) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
        return False
    _check(c.umount2(target.encode(), MNT_DETACH), f"umount {target}")
    return True


def unmount_all(target: str) -> None:
    for _ in range(64):  # several snapshot mounts may be stacked on one target
        if not unmount(target):
            return


# ------------------------------------------------------------------ files and sockets


def open_log(path: str) -> int:
    """A task log (or a terminal's copy), opened to append: output of every run lands after the last."""
    return posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o640)


def remove_file(path: str) -> None:
    """``unlink``; a file already gone is fine."""
    try:
        posix.unlink(path)
    except FileNotFoundError:
        pass


def accept(listener: _socket.socket) -> _socket.socket:
    """``socket.accept`` for a bare ``_socket.socket`` (the ``socket`` module costs a megabyte)."""
    fd, _ = listener._accept()
    sock = _socket.socket(fileno=fd)
    posix.set_inheritable(fd, False)
    return sock


# ------------------------------------------------------------------ processes


def spawn(argv: list[str], stdio: tuple[int, int, int], env: dict | None = None) -> int:
    """Starts ``argv`` with ``stdio`` as fds 0, 1, 2 and default signal dispositions. Only those
    three fds are inherited (Python opens everything close-on-exec)."""
    actions = [(posix.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
    if env is None:  # os.environ where os is loaded (the CLI: it may have been changed); else the initial one
        env = sys.modules["os"].environ if "os" in sys.modules else posix.environ
    return posix.posix_spawn(argv[0], argv, env, file_actions=actions,
                          setsigdef=(SIGPIPE, SIGXFSZ), setsigmask=())


def wait_exit(pid: int) -> int:
    """Waits for our child ``pid``; its exit status, 128+N when a signal N killed it."""
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
            return exit_status(status)
        except InterruptedError:
            continue


def exit_status(wait_status: int) -> int:
    code = posix.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def run(argv: list[str], stdin: int | None = None, stdout: int | None = None,
        stderr: int | None = None) -> tuple[int, bytes, bytes]:
    """Runs ``argv`` to completion: (status, stdout, stderr). Output streams not given are
    captured; stdin defaults to /dev/null."""
    ours: list[int] = []  # our copies of the child's ends, closed once it has them
    captured: dict[int, list[bytes]] = {}  # read end → chunks
    roles: dict[str, int] = {}
    if stdin is None:
        stdin = posix.open("/dev/null", posix.O_RDONLY | posix.O_CLOEXEC)
        ours.append(stdin)
    ends = []
    for name, given in (("out", stdout), ("err", stderr)):
        if given is None:
            r, given = posix.pipe()
            ours.append(given)
            captured[r] = []
            roles[name] = r
        ends.append(given)
    try:
        pid = spawn(argv, (stdin, ends[0], ends[1]))
    except BaseException:
        for fd in captured:  # nothing will read them: a long-lived shim would keep them all
            posix.close(fd)
        raise
    finally:
        for fd in ours:
            posix.close(fd)
    poll = select.poll()
    for fd in captured:
        poll.register(fd, select.POLLIN)
    try:
        pending = len(captured)
        while pending:
            for fd, _ in poll.poll():
                chunk = posix.read(fd, 65536)
                if chunk:
                    captured[fd].append(chunk)
                else:
                    poll.unregister(fd)
                    pending -= 1
    finally:
        for fd in captured:
            posix.close(fd)
    status = wait_exit(pid)
    return (status, b"".join(captured.get(roles.get("out", -1), ())),
            b"".join(captured.get(roles.get("err", -1), ())))
