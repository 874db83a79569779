"""The metadata DB: transactions, the write lock, schema versions."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from dist_tool.errors import DataError, Unavailable
from dist_tool.store.metadata import SCHEMA_VERSION, Metadata


@pytest.fixture
def meta(tmp_path):
    m = Metadata(str(tmp_path))
    yield m
    m.close()


def test_new_database_is_wal_at_the_current_version(meta, tmp_path):
    assert meta.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(tmp_path / "metadata.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_write_rolls_back_on_error(meta):
    with pytest.raises(DataError):
        with meta.write() as conn:
            conn.execute("INSERT INTO namespaces VALUES ('x', '{}', 0, 0)")
            raise DataError("test", "", "boom")
    with meta.read() as conn:
        assert conn.execute("SELECT count(*) FROM namespaces").fetchone()[0] == 0


def test_nested_writes_join_one_transaction_and_hooks_run_after_commit(meta):
    seen = []
    with meta.write() as outer:
        outer.execute("INSERT INTO namespaces VALUES ('a', '{}', 0, 0)")
        with meta.write() as inner:
            assert inner is outer
            inner.execute("INSERT INTO namespaces VALUES ('b', '{}', 0, 0)")
            meta.on_commit(lambda conn: seen.append(conn.execute("SELECT count(*) FROM namespaces").fetchone()[0]))
        assert seen == []
    assert seen == [2]


def test_a_failing_hook_skips_no_other_and_the_commit_stands(meta):
    ran = []

    def fails(_conn):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        with meta.write() as conn:
            conn.execute("INSERT INTO namespaces VALUES ('a', '{}', 0, 0)")
            meta.on_commit(fails)
            meta.on_commit(lambda _conn: ran.append("hook"))
            meta.after_release(lambda: ran.append("after release"))
    assert ran == ["hook", "after release"]
    with meta.read() as conn:
        assert conn.execute("SELECT count(*) FROM namespaces").fetchone()[0] == 1


def test_hooks_of_a_transaction_sqlite_rolled_back_itself_never_run(meta):
    """A full disk makes SQLite roll back on its own; the explicit ROLLBACK must not then hide the
    error, and the hooks must not run at the next, unrelated commit."""
    ran = []
    with meta.write() as conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
    page_count = meta.connection().execute("PRAGMA page_count").fetchone()[0]
    meta.connection().execute(f"PRAGMA max_page_count = {page_count + 2}")
    with pytest.raises(Unavailable, match=r"metadata\.db: database or disk is full"):
        with meta.write() as conn:
            meta.on_commit(lambda _conn: ran.append("stale hook"))
            meta.after_release(lambda: ran.append("stale task"))
            for _ in range(100):
                conn.execute("INSERT INTO filler VALUES (zeroblob(8192))")
    meta.connection().execute("PRAGMA max_page_count = 1073741823")
    with meta.write() as conn:
        conn.execute("INSERT INTO namespaces VALUES ('b', '{}', 0, 0)")
    assert ran == []


def test_a_reader_sees_a_snapshot_while_another_process_writes(meta, tmp_path):
    other = Metadata(str(tmp_path))
    with meta.read() as conn:
        before = conn.execute("SELECT count(*) FROM namespaces").fetchone()[0]
        with other.write() as w:
            w.execute("INSERT INTO namespaces VALUES ('z', '{}', 0, 0)")
        assert conn.execute("SELECT count(*) FROM namespaces").fetchone()[0] == before
    with meta.read() as conn:
        assert conn.execute("SELECT count(*) FROM namespaces").fetchone()[0] == before + 1
    other.close()


def test_writers_in_threads_serialise_without_losing_updates(tmp_path):
    Metadata(str(tmp_path)).schema_version()
    errors = []

    def bump(n):
        m = Metadata(str(tmp_path))
        try:
            for i in range(20):
                with m.write() as conn:
                    conn.execute("INSERT INTO namespaces VALUES (?, '{}', 0, 0)", (f"t{n}-{i}",))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
        finally:
            m.close()

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    m = Metadata(str(tmp_path))
    with m.read() as conn:
        assert conn.execute("SELECT count(*) FROM namespaces").fetchone()[0] == 80
    m.close()


def test_a_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "metadata.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(Unavailable, match="newer"):
        Metadata(str(tmp_path)).schema_version()
