"""The repositories a blob is known to be in (``dist.registry.source.<domain>`` labels), which
push uses for cross-repository mounts: recorded by pull and push, on one store shared by many."""

from __future__ import annotations

import io
import threading
import time

from dist_tool.remote.registry import record_sources, source_label, sources
from dist_tool.session import Session


def test_two_pushes_recording_at_once_keep_both_repositories(tmp_path):
    """Each push read the label, then wrote its own list: the one that wrote last dropped the
    repository the other had just recorded (and with it a later push's mount)."""
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    first = Session(root=root, state=state)
    digest = first.content.ingest("a", io.BytesIO(b"a layer pushed to two repositories"))
    second = Session(root=root, state=state)
    with first.meta.write():  # the first push is recording; the second reads and waits for the lock
        waiting = threading.Thread(target=record_sources, args=(second, [digest], "r.example", "team/b"))
        waiting.start()
        time.sleep(0.5)
        record_sources(first, [digest], "r.example", "team/a")
    waiting.join(30)
    assert not waiting.is_alive()
    assert sorted(sources(first.content.info(digest).labels, "r.example")) == ["team/a", "team/b"]
    assert source_label("r.example") in second.content.info(digest).labels
