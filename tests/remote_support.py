"""A ``dist serve`` in a thread of the test process, on a unix socket under the test's tmp dir.

The contract suites use it to run the remote stores against a real server (the same code
``dist serve`` runs); the CLI tests in tests/cli/test_remote.py start the real command instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from dist_tool.remote import server as serving
from dist_tool.remote.client import Client
from dist_tool.session import Session


class Served:
    def __init__(self, root: str, token: str | None = None) -> None:
        self.root = root
        self.dir = tempfile.mkdtemp(prefix="dist-serve-")  # a socket path must stay under 108 bytes
        self.address = f"unix://{os.path.join(self.dir, 's.sock')}"
        self.httpd = serving.make_server(self.address, lambda ns: Session(root=root, state=f"{root}-state",
                                                                          namespace=ns), token=token)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.clients: list[Client] = []

    def client(self, namespace: str = "default") -> Client:
        c = Client(self.address, namespace)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
