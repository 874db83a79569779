"""Spec options: one small function per ``container create`` option, applied in order.

Each ``with_*`` returns a ``SpecOpt``. The ``parse_*`` and ``check_*``
functions turn command-line text into the values the options take, raising
``InvalidArgument`` before anything is written (SPEC: usage errors are exit 2).

SPEC's rules live here: ``-- ARG...`` replaces the image's Cmd and keeps its
Entrypoint; ``--entrypoint CMD`` replaces the Entrypoint and drops the image's
Cmd (docker's rule), ``--entrypoint ''`` clears it; ``--env K=V`` replaces the
image's value of K, and each key appears once; without ``--net-host`` the
task has its own network namespace.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence

from dist_tool.errors import InvalidArgument, NotFound
from dist_tool.spec import users
from dist_tool.spec.base import SpecContext, SpecOpt
from dist_tool.spec.defaults import DEFAULT_PATH

HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")  # shared read-only with --net-host (containerd's WithHost*)
_MOUNT_KEYS = {"type": "type", "src": "source", "source": "source", "dst": "destination",
               "destination": "destination", "target": "destination", "options": "options"}

# ---------------------------------------------------------------- parsing (usage errors first)


def parse_env(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """``K=V`` arguments as (key, value), in order. An empty key or a missing ``=`` is exit 2."""
    out = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgument("env", pair, "expected KEY=VALUE")
        if "\0" in pair:
            raise InvalidArgument("env", pair.replace("\0", "\\0"), "contains a NUL byte")
        out.append((key, value))
    return out


def check_cwd(cwd: str) -> str:
    if not cwd.startswith("/") or "\0" in cwd:
        raise InvalidArgument("cwd", cwd, "must be an absolute path")
    return posixpath.normpath(cwd)


def parse_mount(text: str) -> dict:
    """``type=bind,src=S,dst=D[,options=ro:rbind]`` as an OCI mount.

    ``type`` defaults to ``bind``; a bind mount gets ``rbind`` unless ``bind`` or ``rbind``
    is among its options. The destination must be absolute; a bind source must be an
    absolute path that exists (NotFound otherwise).
    """
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in _MOUNT_KEYS or not value:
            raise InvalidArgument("mount", text, "expected type=bind,src=SOURCE,dst=DEST[,options=OPT:OPT]")
        if _MOUNT_KEYS[key] in fields:
            raise InvalidArgument("mount", text, f"{key} given twice")
        fields[_MOUNT_KEYS[key]] = value
    mount_type = fields.get("type", "bind")
    dest = fields.get("destination")
    if not dest or not dest.startswith("/") or posixpath.normpath(dest) == "/":
        raise InvalidArgument("mount", text, "dst must be an absolute path other than /")
    options = [o for o in fields.get("options", "").split(":") if o]
    source = fields.get("source", "")
    if mount_type == "bind":
        if not source.startswith("/"):
            raise InvalidArgument("mount", text, "src of a bind mount must be an absolute path")
        if not os.path.exists(source):
            raise NotFound("mount source", source, "no such file or directory")
        if "bind" not in options and "rbind" not in options:
            options.append("rbind")
    return {"destination": posixpath.normpath(dest), "type": mount_type, "source": source or mount_type,
            "options": options}


def parse_entrypoint(value: str | None) -> list[str] | None:
    """``--entrypoint CMD``: one executable (docker's flag); ``''`` clears; None keeps the image's."""
    if value is None:
        return None
    return [value] if value else []


# ---------------------------------------------------------------- options


def _set_args(ctx: SpecContext, spec: dict) -> None:
    spec["process"]["args"] = [*ctx.entrypoint, *ctx.cmd]


def _merge_env(env: Sequence[str], pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``env`` with each key of ``pairs`` replaced in place or appended; each key once."""
    out: list[str] = []
    index: dict[str, int] = {}
    for item in [*env, *(f"{k}={v}" for k, v in pairs)]:
        key = item.partition("=")[0]
        if key in index:
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    return out


def with_image_config(config: Mapping | None) -> SpecOpt:
    """The image config's ``Env`` (over the default PATH), ``Entrypoint`` + ``Cmd`` as the
    arguments, ``WorkingDir`` as the cwd; ``User`` is kept for ``with_user(None)``."""
    config = config or {}

    def opt(ctx: SpecContext, spec: dict) -> None:
        env = [e for e in (config.get("Env") or []) if isinstance(e, str)]
        spec["process"]["env"] = _merge_env([DEFAULT_PATH], (tuple(e.partition("=")[::2]) for e in env))
        ctx.entrypoint = [str(a) for a in (config.get("Entrypoint") or [])]
        ctx.cmd = [str(a) for a in (config.get("Cmd") or [])]
        _set_args(ctx, spec)
        spec["process"]["cwd"] = config.get("WorkingDir") or "/"
        ctx.image_user = str(config.get("User") or "")

    return opt


def with_entrypoint(entrypoint: Sequence[str]) -> SpecOpt:
    """Replaces the Entrypoint and drops the image's Cmd (arguments given later still apply)."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        ctx.entrypoint = list(entrypoint)
        ctx.cmd = []
        _set_args(ctx, spec)

    return opt


def with_args(args: Sequence[str]) -> SpecOpt:
    """Replaces the Cmd: the process runs Entrypoint + ``args``."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        ctx.cmd = list(args)
        _set_args(ctx, spec)

    return opt


def require_args() -> SpecOpt:
    """Refuses a spec with no process to run (docker's "no command specified")."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        if not spec["process"]["args"]:
            raise InvalidArgument("container", ctx.container_id,
                                  "no command: the image has no Entrypoint or Cmd; give one after --")

    return opt


def with_env(pairs: Iterable[tuple[str, str]]) -> SpecOpt:
    """Sets each ``(key, value)``, replacing the image's value of the key."""
    pairs = list(pairs)

    def opt(ctx: SpecContext, spec: dict) -> None:
        spec["process"]["env"] = _merge_env(spec["process"]["env"], pairs)

    return opt


def with_cwd(cwd: str) -> SpecOpt:
    def opt(ctx: SpecContext, spec: dict) -> None:
        spec["process"]["cwd"] = cwd

    return opt


def with_user(user: str | None = None) -> SpecOpt:
    """Runs the process as ``user`` (``UID[:GID]`` or ``NAME[:GROUP]``), or as the image's
    ``User`` when None, resolving names against the image's ``/etc/passwd`` and ``/etc/group``."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        wanted = ctx.image_user if user is None else user
        spec["process"]["user"] = users.resolve(wanted, ctx.read_file).to_spec()

    return opt


def with_mounts(mounts: Sequence[Mapping]) -> SpecOpt:
    """Adds mounts; one at the destination of a default mount replaces it."""
    mounts = [dict(m) for m in mounts]

    def opt(ctx: SpecContext, spec: dict) -> None:
        taken = {m["destination"] for m in mounts}
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in taken] + mounts

    return opt


def with_host_network(host_files: Sequence[str] = HOST_FILES) -> SpecOpt:
    """Shares the host's network namespace, hostname, ``/etc/hosts`` and ``/etc/resolv.conf``."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        import socket

        linux = spec["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        spec["hostname"] = socket.gethostname()
        shared = [{"destination": p, "type": "bind", "source": p, "options": ["rbind", "ro"]}
                  for p in host_files if os.path.exists(p)]
        with_mounts(shared)(ctx, spec)

    return opt


def with_readonly_rootfs() -> SpecOpt:
    def opt(ctx: SpecContext, spec: dict) -> None:
        spec["root"]["readonly"] = True

    return opt


def with_tty() -> SpecOpt:
    """A terminal for the process, and ``TERM=xterm`` unless the environment sets TERM."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        spec["process"]["terminal"] = True
        if not any(e.startswith("TERM=") for e in spec["process"]["env"]):
            spec["process"]["env"].append("TERM=xterm")

    return opt
