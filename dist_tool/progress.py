"""What long transfers report to: ``render.Progress`` draws it; the domain only calls it."""

from typing import Protocol


class ProgressReporter(Protocol):
    def start(self, item: str, total: int | None) -> None: ...
    def update(self, item: str, done: int) -> None: ...
    def done(self, item: str, note: str = "done") -> None: ...
    def event(self, text: str) -> None: ...


class NullProgress:
    """Reports to nobody: for callers that pass no progress (tests, the server, unpack from create)."""

    def start(self, item: str, total: int | None) -> None: ...
    def update(self, item: str, done: int) -> None: ...
    def done(self, item: str, note: str = "done") -> None: ...
    def event(self, text: str) -> None: ...


def item_label(name: str) -> str:
    """How a transfer names a blob in progress lines: ``sha256:`` and 12 hex digits, else the name,
    escaped: an archive's member name may hold a newline and a terminal's escape sequences."""
    if name.startswith("sha256:"):
        return name[:19]
    from dist_tool.render import printable

    return printable(name)
