"""The one place that decides table vs ``--json`` vs ``-q``, and the only rich importer.

Commands hand records (JSON-shaped dicts from each record's ``to_json``) and
a column spec. JSON gets integer sizes and RFC 3339 UTC times; tables get IEC
sizes and ages. rich is imported only when a person will see its output: a
``--json`` or ``-q`` run, or a listing bigger than ``RICH_TABLE_MAX_ROWS``
(rich's Table needs ~0.5 s for 1,000 rows), uses the plain aligned writer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

RICH_TABLE_MAX_ROWS = 200
TIME_KEYS = frozenset({"createdAt", "updatedAt", "startedAt", "exitedAt", "expiresAt"})


# ---------------------------------------------------------------- formats


def iec(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "-"
    seconds = max(0, int((now or time.time()) - t))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now" if seconds < 2 else f"{seconds} seconds ago"


def short_digest(digest: str | None) -> str:
    if not digest:
        return "-"
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


def labels_text(labels: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "-"


def jsonable(value: Any) -> Any:
    """Times to RFC 3339 where records carry them: a record's own keys and its nested objects'
    (``lastExit.exitedAt``), in documents, lists of records and trees."""
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = None
    for key, item in value.items():
        if key in TIME_KEYS and isinstance(item, int | float) and not isinstance(item, bool):
            out = out if out is not None else dict(value)
            out[key] = rfc3339(item)
        elif isinstance(item, dict | list) and item:
            converted = jsonable(item)
            if converted is not item:
                out = out if out is not None else dict(value)
                out[key] = converted
    return value if out is None else out


# ---------------------------------------------------------------- columns


@dataclass(frozen=True)
class Col:
    header: str
    path: str
    fmt: Callable[[Any], str] | None = None
    max_width: int | None = None


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    if "." not in path:
        return record.get(path)
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _cell(record: Mapping[str, Any], col: Col) -> str:
    value = _lookup(record, col.path)
    if col.fmt is not None:
        return col.fmt(value)
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


class Renderer:
    """Owns stdout/stderr for one invocation."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    @property
    def is_tty(self) -> bool:
        return self.out.isatty()

    # ------------------------------------------------------------ documents

    def json(self, doc: Any) -> None:
        # Indented for a person at a terminal; compact (the C encoder, ~5x faster) for pipes.
        self.out.write(json.dumps(jsonable(doc), indent=2 if self.is_tty else None))
        self.out.write("\n")

    def lines(self, items: Iterable[str]) -> None:
        self.out.write("".join(f"{i}\n" for i in items))

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def records(self, records: Sequence[Mapping[str, Any]], columns: Sequence[Col], *,
                as_json: bool = False, quiet: bool = False, key: str = "name") -> None:
        if as_json:
            self.json(list(records))
        elif quiet:
            self.lines(str(_lookup(r, key)) for r in records)
        else:
            self.table([[_cell(r, c) for c in columns] for r in records], [c.header for c in columns],
                       [c.max_width for c in columns])

    def fields(self, record: Mapping[str, Any], columns: Sequence[Col], as_json: bool = False) -> None:
        """One record as ``FIELD: value`` lines (or the record as JSON)."""
        if as_json:
            self.json(record)
            return
        width = max(len(c.header) for c in columns)
        for c in columns:
            self.line(f"{c.header + ':':<{width + 1}} {_cell(record, c)}")

    # ------------------------------------------------------------ tables

    def table(self, rows: Sequence[Sequence[str]], headers: Sequence[str],
              max_widths: Sequence[int | None] | None = None) -> None:
        if self.is_tty and len(rows) <= RICH_TABLE_MAX_ROWS:
            self._rich_table(rows, headers, max_widths)
            return
        widths = [len(h) for h in headers]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        if max_widths:
            widths = [min(w, m) if m else w for w, m in zip(widths, max_widths, strict=False)]
        fmt_row = self._plain_row(widths)
        self.out.write("".join(fmt_row(r) for r in [headers, *rows]))

    @staticmethod
    def _plain_row(widths: Sequence[int]) -> Callable[[Sequence[str]], str]:
        last = len(widths) - 1

        def fmt(row: Sequence[str]) -> str:
            cells = []
            for i, cell in enumerate(row):
                if len(cell) > widths[i]:
                    cell = cell[: max(1, widths[i] - 1)] + "…"
                cells.append(cell if i == last else cell.ljust(widths[i]))
            return "   ".join(cells).rstrip() + "\n"

        return fmt

    def _rich_table(self, rows: Sequence[Sequence[str]], headers: Sequence[str],
                    max_widths: Sequence[int | None] | None = None) -> None:
        from rich.table import Table, box

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        natural = 0
        for i, h in enumerate(headers):
            widest = max([len(h), *(len(r[i]) for r in rows)])
            limit = max_widths[i] if max_widths and i < len(max_widths) else None
            natural += min(widest, limit or widest) + 3
            table.add_column(h, no_wrap=True, overflow="ellipsis", max_width=limit)
        for row in rows:
            table.add_row(*row)
        # Never squeeze columns to the terminal (rich would cut digests and drop columns): a wide
        # table wraps at the terminal's edge, as podman's and ctr's do.
        console = self._console()
        console.width = max(console.width, natural)
        console.print(table)

    def _console(self):
        from rich.console import Console

        return Console(file=self.out, markup=False, highlight=False, emoji=False,
                       no_color=not self.is_tty or "NO_COLOR" in os.environ)

    # ------------------------------------------------------------ trees

    def tree(self, root: Mapping[str, Any], label: Callable[[Mapping[str, Any]], str],
             children_key: str = "children") -> None:
        """An indented tree with box-drawing guides (``images inspect``, ``snapshot tree``)."""
        out: list[str] = []

        def visit(node: Mapping[str, Any], prefix: str, last: bool, top: bool) -> None:
            branch = "" if top else ("└── " if last else "├── ")
            out.append(f"{prefix}{branch}{label(node)}")
            kids = node.get(children_key) or []
            extension = "" if top else ("    " if last else "│   ")
            for i, kid in enumerate(kids):
                visit(kid, prefix + extension, i == len(kids) - 1, False)

        visit(root, "", True, True)
        self.lines(out)


# ---------------------------------------------------------------- progress


class Progress:
    """Progress of long transfers on stderr: rich bars on a terminal, plain lines otherwise.

    ``mode`` is SPEC's ``--progress``: auto, tty, plain or none.
    """

    PLAIN_INTERVAL = 1.0  # seconds between plain lines for one item

    def __init__(self, mode: str, err: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        if mode == "auto":
            mode = "tty" if self.err.isatty() else "plain"
        self.mode = mode
        self._rich = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, float] = {}

    def __enter__(self) -> Progress:
        if self.mode == "tty":
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(),
                                      console=Console(file=self.err, markup=False, highlight=False),
                                      transient=False)
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def start(self, item: str, total: int | None) -> None:
        if self.mode == "tty" and self._rich is not None:
            self._tasks[item] = self._rich.add_task(item, total=total)
        elif self.mode == "plain":
            self._last[item] = time.monotonic()

    def update(self, item: str, done: int) -> None:
        if self.mode == "tty" and self._rich is not None and item in self._tasks:
            self._rich.update(self._tasks[item], completed=done)
        elif self.mode == "plain":
            now = time.monotonic()
            if now - self._last.get(item, 0) >= self.PLAIN_INTERVAL:
                self._last[item] = now
                self.err.write(f"{item}: {iec(done)}\n")

    def done(self, item: str, note: str = "done") -> None:
        if self.mode == "tty" and self._rich is not None and item in self._tasks:
            task_id = self._tasks[item]
            task = next(t for t in self._rich.tasks if t.id == task_id)
            self._rich.update(task_id, completed=task.total if task.total is not None else task.completed)
        elif self.mode == "plain":
            self.err.write(f"{item}: {note}\n")

    def event(self, text: str) -> None:
        if self.mode == "plain":
            self.err.write(text + "\n")
        elif self.mode == "tty" and self._rich is not None:
            self._rich.console.print(text)
