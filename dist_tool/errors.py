"""The one error hierarchy of dist, and the exit codes of SPEC.

Every layer raises these; only ``cli.main()`` turns them into an exit status,
and the server (``dist serve``) carries them over the wire by ``kind``. This
module imports nothing from ``dist_tool`` so that any layer may import it.

An error reads as SPEC's one line, ``<what> <which>: <why>``, e.g.
``raise NotFound("image", "docker.io/library/x:latest", "not found")``.
"""

from __future__ import annotations

MAX_SHOWN = 300  # characters of the value an error names: a 255-character reference or a sha512 fits


class DistError(Exception):
    """Base of every error dist reports to a user; ``exit_code`` is SPEC's."""

    exit_code = 1
    kind = "failed"

    def __init__(self, what: str, which: str = "", why: str = "") -> None:
        super().__init__(what, which, why)
        self.what = what
        self.which = which
        self.why = why

    def __str__(self) -> str:
        which = self.which
        if len(which) > MAX_SHOWN:  # a 4 KB label or a pasted file must not become a 4 KB error line
            which = f"{which[:MAX_SHOWN - 44]}… ({len(which)} characters)"
        head = f"{self.what} {which}" if which else self.what
        return f"{head}: {self.why}" if self.why else head


class InvalidArgument(DistError):
    """A malformed reference, label, filter, identifier, platform, digest or option."""

    exit_code = 2
    kind = "invalid"


class NotFound(DistError):
    exit_code = 3
    kind = "not-found"


class AlreadyExists(DistError):
    exit_code = 4
    kind = "already-exists"


class Conflict(DistError):
    """In use: a blob being written, a snapshot with children, a container with a live task."""

    exit_code = 4
    kind = "conflict"


class DataError(DistError):
    """Content that is not what it claims: digest or size mismatch, bad archive, bad JSON."""

    exit_code = 1
    kind = "data"


class Unavailable(DistError):
    """Something outside dist failed: the runtime, a registry, the disk."""

    exit_code = 1
    kind = "unavailable"


class TaskFailed(DistError):
    """A command that passes a task's status through failed itself (SPEC "Exit status"): 125 dist
    failed, 126 the command could not be invoked, 127 the command was not found."""

    exit_code = 125
    kind = "task-failed"

    def __init__(self, what: str, which: str = "", why: str = "", status: int = 125) -> None:
        super().__init__(what, which, why)
        self.exit_code = status


def keep_going(items, action, done=None, ignore: tuple[type[DistError], ...] = ()) -> DistError | None:
    """A multi-name operation (ctr's, CONVENTIONS G8): ``action`` on every item and ``done``
    after each that worked; one that fails does not stop the others. Returns the first error
    (those of the ``ignore`` classes do not count), which is what the command exits with."""
    first: DistError | None = None
    for item in items:
        try:
            action(item)
        except ignore:
            continue
        except DistError as e:
            first = first or e
        else:
            if done is not None:
                done(item)
    return first


ERROR_KINDS: dict[str, type[DistError]] = {
    cls.kind: cls
    for cls in (DistError, InvalidArgument, NotFound, AlreadyExists, Conflict, DataError, Unavailable, TaskFailed)
}


class TaskExit(Exception):
    """Not an error: a command that passes a task's exit status through (``dist run``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
