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

from dist_tool.errors import DataError, InvalidArgument, NotFound
from dist_tool.spec import users
from dist_tool.spec.base import SpecContext, SpecOpt
from dist_tool.spec.defaults import DEFAULT_PATH
from dist_tool.validate import utf8

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
        utf8("env", pair)  # as surrogates in the spec, runc would set other bytes than were given
        out.append((key, value))
    return out


def clean_path(path: str) -> str:
    """An absolute path in its one spelling: ``normpath`` keeps a leading ``//`` (POSIX leaves
    its meaning to the system), which would not match the ``/proc`` it means."""
    return "/" + posixpath.normpath(path).lstrip("/")


def check_cwd(cwd: str) -> str:
    if not cwd.startswith("/") or "\0" in cwd:
        raise InvalidArgument("cwd", cwd, "must be an absolute path")
    utf8("cwd", cwd)  # as a surrogate in the spec, runc would make and enter another directory
    return clean_path(cwd)


def check_args(args: Iterable[str]) -> list[str]:
    """The ``-- ARG...`` as given; one that is not UTF-8 is exit 2 (in the spec's JSON runc would
    read U+FFFD for its other bytes, and run or pass something else)."""
    return [utf8("argument", arg) for arg in args]


def parse_mount(text: str) -> dict:
    """``type=bind,src=S,dst=D[,options=ro:rbind]`` as an OCI mount.

    ``type`` defaults to ``bind``; a bind mount gets ``rbind`` unless ``bind`` or ``rbind``
    is among its options. The destination must be absolute; a bind source must be an
    absolute path that exists (NotFound otherwise).
    """
    utf8("mount", text)  # as surrogates in the spec, runc would read other bytes than were given
    if "\0" in text:
        raise InvalidArgument("mount", text.replace("\0", "\\0"), "contains a NUL byte")
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
    if not dest or not dest.startswith("/") or clean_path(dest) == "/":
        raise InvalidArgument("mount", text, "dst must be an absolute path other than /")
    if clean_path(dest) == "/proc" and mount_type != "proc":
        raise InvalidArgument("mount", text, "only a proc mount may be at /proc (runc refuses any other)")
    options = [o for o in fields.get("options", "").split(":") if o]
    source = fields.get("source", "")
    if mount_type == "bind":
        if not source.startswith("/"):
            raise InvalidArgument("mount", text, "src of a bind mount must be an absolute path")
        if not os.path.exists(source):
            raise NotFound("mount source", source, "no such file or directory")
        if "bind" not in options and "rbind" not in options:
            options.append("rbind")
    return {"destination": clean_path(dest), "type": mount_type, "source": source or mount_type,
            "options": options}


def parse_mounts(texts: Iterable[str]) -> list[dict]:
    """``--mount`` arguments; two at one destination are exit 2 (docker's "duplicate mount point")."""
    mounts = [parse_mount(t) for t in texts]
    seen: set[str] = set()
    for m in mounts:
        if m["destination"] in seen:
            raise InvalidArgument("mount", m["destination"], "two mounts at one destination")
        seen.add(m["destination"])
    return mounts


def parse_entrypoint(value: str | None) -> list[str] | None:
    """``--entrypoint CMD``: one executable (docker's flag); ``''`` clears; None keeps the image's."""
    if value is None:
        return None
    return [utf8("entrypoint", value)] if value else []


# ---------------------------------------------------------------- options


def _set_args(ctx: SpecContext, spec: dict) -> None:
    spec["process"]["args"] = [*ctx.entrypoint, *ctx.cmd]


def _merge_env(env: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """``env`` with each ``K=V`` of ``overrides`` replacing K's value in place, or appended; each
    key once. An override without ``=`` unsets its key (containerd's replaceOrAppendEnvValues)."""
    out: dict[str, str] = {}
    for item in env:
        out[item.partition("=")[0]] = item
    for item in overrides:
        key, eq, _ = item.partition("=")
        if eq:
            out[key] = item
        else:
            out.pop(key, None)
    return list(out.values())


# No C string holds one: runc could not exec such an argument or enter such a directory, and
# dist's own lookups of it failed as an internal error.
_NUL = "holds a NUL byte"


def _config_strings(config: Mapping, field: str) -> list[str]:
    """A list-of-strings field of the image config (Env, Entrypoint, Cmd); null is empty."""
    value = config.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError("image config", field, "is not a list of strings")
    if any("\0" in v for v in value):
        raise DataError("image config", field, _NUL)
    return value


def _config_string(config: Mapping, field: str) -> str:
    value = config.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError("image config", field, "is not a string")
    if "\0" in value:
        raise DataError("image config", field, _NUL)
    return value


def with_image_config(config: Mapping | None) -> SpecOpt:
    """The image config's ``Env`` (over the default PATH), ``Entrypoint`` + ``Cmd`` as the
    arguments, ``WorkingDir`` as the cwd; ``User`` is kept for ``with_user``. A field of the
    wrong type is a DataError (containerd cannot decode such a config either)."""
    config = config or {}

    def opt(ctx: SpecContext, spec: dict) -> None:
        env = _config_strings(config, "Env")
        for item in env:
            if item.startswith("="):
                raise DataError("image config", "Env", f"{item!r} is not NAME=VALUE")
        spec["process"]["env"] = _merge_env([DEFAULT_PATH], env)
        ctx.entrypoint = list(_config_strings(config, "Entrypoint"))
        ctx.cmd = list(_config_strings(config, "Cmd"))
        _set_args(ctx, spec)
        spec["process"]["cwd"] = _config_string(config, "WorkingDir") or "/"
        ctx.image_user = _config_string(config, "User")

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
        spec["process"]["env"] = _merge_env(spec["process"]["env"], (f"{k}={v}" for k, v in pairs))

    return opt


def with_cwd(cwd: str) -> SpecOpt:
    def opt(ctx: SpecContext, spec: dict) -> None:
        spec["process"]["cwd"] = cwd

    return opt


def require_absolute_cwd() -> SpecOpt:
    """Refuses an image's relative ``WorkingDir`` that no ``--cwd`` replaced: runc would refuse
    it at every start; docker refuses it at create, as this does."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        cwd = spec["process"]["cwd"]
        if not cwd.startswith("/"):
            raise DataError("image config", "WorkingDir", f"{cwd!r} is not an absolute path (give --cwd)")

    return opt


def with_user(user: str | None = None) -> SpecOpt:
    """Runs the process as ``user`` (``UID[:GID]`` or ``NAME[:GROUP]``), or as the image's
    ``User`` when None or empty (ctr's and docker's ``--user ''``), resolving names against the
    image's ``/etc/passwd`` and ``/etc/group``."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        if user:
            resolved = users.resolve(user, ctx.read_file)
        else:
            try:
                resolved = users.resolve(ctx.image_user, ctx.read_file)
            except InvalidArgument as e:  # the image's fault, not the command line's
                raise DataError("image config", "User", f"{ctx.image_user!r}: {e.why}") from None
        spec["process"]["user"] = resolved.to_spec()

    return opt


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _depth(mount: Mapping) -> int:
    return mount["destination"].rstrip("/").count("/")


def with_mounts(mounts: Sequence[Mapping]) -> SpecOpt:
    """Adds mounts. One at or above the destination of a mount already in the spec replaces it:
    a ``/dev`` of the user's takes the default ``/dev/pts``, ``/dev/shm`` and ``/dev/mqueue``
    away (docker's rule for ``/dev``), which would otherwise be mounted before it and hidden.
    Mounts are then ordered parents first, so none is mounted under one that covers it later."""
    mounts = [dict(m) for m in mounts]

    def opt(ctx: SpecContext, spec: dict) -> None:
        kept = [m for m in spec["mounts"] if not any(_under(m["destination"], n["destination"]) for n in mounts)]
        spec["mounts"] = sorted(kept + mounts, key=_depth)  # stable: same depth keeps its order

    return opt


def with_host_network(host_files: Sequence[str] = HOST_FILES) -> SpecOpt:
    """Shares the host's network namespace, hostname, ``/etc/hosts`` and ``/etc/resolv.conf``."""

    def opt(ctx: SpecContext, spec: dict) -> None:
        import socket

        linux = spec["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        spec["hostname"] = socket.gethostname()
        # A mount of the user's at one of these wins (docker's and nerdctl's precedence).
        taken = {m["destination"] for m in spec["mounts"]}
        spec["mounts"] += [{"destination": p, "type": "bind", "source": p, "options": ["rbind", "ro"]}
                           for p in host_files if os.path.exists(p) and p not in taken]

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
