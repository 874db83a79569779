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
from functools import lru_cache
from typing import Any, NamedTuple, TextIO

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
    """UTC with microseconds (``2026-11-27T23:21:39.123456Z``), rounded as datetime rounds."""
    if t is None:
        return None
    seconds = int(t // 1)
    micros = round((t - seconds) * 1e6)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return f"{_utc_second(seconds)}.{micros:06d}Z"


@lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    # A listing of 1,000 records formats 2,000 times, mostly within a few seconds of each other.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def stamp(t: float | None) -> str:
    """A table's time: the RFC 3339 UTC string the record's JSON holds (SPEC gives tables no other
    format), or "-" for none."""
    return rfc3339(t) or "-"


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


class Col(NamedTuple):
    header: str
    path: str
    fmt: Callable[[Any], str] | None = None
    max_width: int | None = None


def printable(text: str) -> str:
    """``text`` with what a terminal would act on (an escape sequence, a newline, a carriage
    return) shown escaped, as repr() shows it: names and labels are data, and a label must not
    clear the screen or break a table's row."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    # A byte that is not UTF-8 reaches Python as a surrogate (U+DC80-U+DCFF): shown as the byte
    # the user typed or the file held, \xff, not as the surrogate's \udcff.
    return f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else repr(c)[1:-1]


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    if "." not in path:
        return record.get(path)
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):  # records are JSON-shaped; an ABC check costs 1,000 rows dearly
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def _cell(record: Mapping[str, Any], col: Col) -> str:
    return (col.fmt or _text)(_lookup(record, col.path))


def _column(records: Sequence[Mapping[str, Any]], col: Col) -> list[str]:
    """One column's cells: a listing of 1,000 records is rendered column by column."""
    fmt = col.fmt or _text
    if "." in col.path:
        return [fmt(_lookup(r, col.path)) for r in records]
    return [fmt(r.get(col.path)) for r in records]


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

    def labels(self, labels: Mapping[str, str], as_json: bool = False) -> None:
        """What every ``label`` command prints: the resulting labels, as KEY=VALUE lines or a JSON object."""
        if as_json:
            self.json(dict(labels))
        else:
            self.lines(printable(f"{k}={v}") for k, v in sorted(labels.items()))

    def records(self, records: Sequence[Mapping[str, Any]], columns: Sequence[Col], *,
                as_json: bool = False, quiet: bool = False, key: str = "name") -> None:
        if as_json:
            self.json(list(records))
        elif quiet:
            self.lines(str(_lookup(r, key)) for r in records)
        else:
            cells = [_column(records, c) for c in columns]
            self.table(list(zip(*cells, strict=True)), [c.header for c in columns], [c.max_width for c in columns])

    def fields(self, record: Mapping[str, Any], columns: Sequence[Col], as_json: bool = False) -> None:
        """One record as ``FIELD: value`` lines (or the record as JSON)."""
        if as_json:
            self.json(record)
            return
        width = max(len(c.header) for c in columns)
        for c in columns:
            self.line(f"{c.header + ':':<{width + 1}} {printable(_cell(record, c))}")

    # ------------------------------------------------------------ tables

    def table(self, rows: Sequence[Sequence[str]], headers: Sequence[str],
              max_widths: Sequence[int | None] | None = None) -> None:
        rows = [[printable(cell) for cell in row] for row in rows]
        if self.is_tty and len(rows) <= RICH_TABLE_MAX_ROWS:
            self._rich_table(rows, headers, max_widths)
            return
        columns = [list(column) for column in zip(headers, *rows, strict=True)]
        for i, limit in enumerate(max_widths or ()):
            if limit and i < len(columns):
                columns[i] = [c if len(c) <= limit else c[: max(1, limit - 1)] + "…" for c in columns[i]]
        widths = [max(map(len, column)) for column in columns]
        # One format string for every row: the last column is not padded, so no line ends in spaces
        # unless its last cells are empty (then rstrip, as before).
        row_format = "   ".join([*(f"{{:<{w}}}" for w in widths[:-1]), "{}"]) + "\n"
        text = "".join(row_format.format(*row) for row in zip(*columns, strict=True))
        if any(not cell for cell in columns[-1]):
            text = "".join(line.rstrip() + "\n" for line in text.splitlines())
        self.out.write(text)

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
        return plain_console(self.out, self.is_tty)

    # ------------------------------------------------------------ trees

    def tree(self, root: Mapping[str, Any], label: Callable[[Mapping[str, Any]], str],
             children_key: str = "children", flat: bool = False) -> None:
        """An indented tree with box-drawing guides (``images inspect``, ``snapshot tree``);
        ``flat``: the labels alone, one per line in the same order (``-q``)."""
        out: list[str] = []

        def visit(node: Mapping[str, Any], prefix: str, last: bool, top: bool) -> None:
            branch = "" if top or flat else ("└── " if last else "├── ")
            out.append(f"{prefix}{branch}{printable(label(node))}")
            kids = node.get(children_key) or []
            extension = "" if top or flat else ("    " if last else "│   ")
            for i, kid in enumerate(kids):
                visit(kid, prefix + extension, i == len(kids) - 1, False)

        visit(root, "", True, True)
        self.lines(out)


def plain_console(file, is_tty: bool):
    """A rich Console that prints text as given: names and labels are data, never markup or
    emoji codes; colour only on a terminal, and never under NO_COLOR."""
    from rich.console import Console

    return Console(file=file, markup=False, highlight=False, emoji=False,
                   no_color=not is_tty or "NO_COLOR" in os.environ)


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
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the bars; a later event starts them again. Idempotent."""
        if self._rich is not None:
            self._rich.stop()
            self._rich, self._tasks = None, {}

    def _bars(self):
        """rich's display, started with the first bar or event: started at once, a command that
        failed before any transfer (a missing archive) left the display's blank line above its
        one-line error when stderr is no terminal (``--progress tty`` forced)."""
        if self._rich is None:
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), console=plain_console(self.err, self.err.isatty()),
                                      transient=False)
            self._rich.start()
        return self._rich

    def start(self, item: str, total: int | None) -> None:
        if self.mode == "tty":
            self._tasks[item] = self._bars().add_task(item, total=total)
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
        elif self.mode == "tty":
            self._bars().console.print(text)
