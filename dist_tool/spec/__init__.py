"""OCI runtime specs for containers: a default spec and option functions applied in order
(containerd's ``SpecOpts``). See ``base`` for the shape, ``defaults`` for the default spec,
``opts`` for the options, ``users`` and ``rootfs`` for resolving ``--user`` in the image."""

from dist_tool.spec.base import SpecContext, SpecOpt, apply
from dist_tool.spec.defaults import default_spec
from dist_tool.spec.opts import (
    check_args,
    check_cwd,
    parse_entrypoint,
    parse_env,
    parse_mount,
    parse_mounts,
    require_absolute_cwd,
    require_args,
    with_args,
    with_cwd,
    with_entrypoint,
    with_env,
    with_host_network,
    with_image_config,
    with_mounts,
    with_readonly_rootfs,
    with_tty,
    with_user,
)

__all__ = [
    "SpecContext", "SpecOpt", "apply", "default_spec", "check_args", "check_cwd", "parse_entrypoint", "parse_env",
    "parse_mount", "parse_mounts", "require_absolute_cwd", "require_args", "with_args", "with_cwd",
    "with_entrypoint", "with_env", "with_host_network", "with_image_config", "with_mounts",
    "with_readonly_rootfs", "with_tty", "with_user",
]
