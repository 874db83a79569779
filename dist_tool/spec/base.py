"""What every spec option sees: ``SpecContext``, the ``SpecOpt`` shape, and ``apply``.

containerd's ``SpecOpts`` in Python: an option is a small function that edits
the spec (a JSON-shaped dict, OCI runtime-spec 1.1) in place; options apply in
order, so a later one overrides an earlier one (``with_args`` after
``with_image_config`` replaces the image's Cmd). Options raise
``InvalidArgument`` or ``NotFound``; nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from dist_tool.spec.users import MAX_ACCOUNT_FILE_BYTES


class FileReader(Protocol):
    def read(self, path: str, limit: int) -> bytes | None:
        """A file of the image's root filesystem (``spec.rootfs``), None when absent."""
        ...


class SpecContext:
    """One container's spec under construction: its identity, its image's root filesystem
    (read lazily, only when a user or group name must be resolved) and the process-argument
    state that docker's Entrypoint/Cmd rules need. (A plain class: create imports this, and a
    dataclass costs a millisecond to define.)"""

    __slots__ = ("container_id", "namespace", "rootfs", "entrypoint", "cmd", "image_user")

    def __init__(self, container_id: str, namespace: str = "default", rootfs: FileReader | None = None) -> None:
        self.container_id = container_id
        self.namespace = namespace
        self.rootfs = rootfs  # None: no files to read (every lookup finds nothing)
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.image_user = ""

    def read_file(self, path: str) -> bytes | None:
        """A small file of the image's root filesystem, or None when it has none."""
        if self.rootfs is None:
            return None
        return self.rootfs.read(path, MAX_ACCOUNT_FILE_BYTES)


SpecOpt = Callable[[SpecContext, dict], None]


def apply(ctx: SpecContext, spec: dict, opts: Iterable[SpecOpt]) -> dict:
    """Applies ``opts`` to ``spec`` in order; returns ``spec``."""
    for opt in opts:
        opt(ctx, spec)
    return spec
