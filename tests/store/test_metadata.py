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
