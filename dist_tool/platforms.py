"""Platforms (``os/architecture[/variant]``): the host's, parsing, matching, order.

Spellings are normalised the way containerd does (``x86_64`` is ``amd64``,
``aarch64`` is ``arm64``, ``armhf`` is ``arm/v7``), so a user's ``--platform``
and an index's descriptors compare equal whatever tool wrote them. Nothing
here probes the machine until ``host()`` is first called.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from dist_tool.errors import DataError, InvalidArgument, NotFound

# Aliases: the architecture, and the variant they imply (None: keep the given one).
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    # platform.machine() spellings on 32-bit ARM kernels
    "armv5l": ("arm", "v5"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v8"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "loongarch64": ("loong64", None),
}
# Variants that are the architecture's baseline, and so mean no variant at all.
_BASELINE_VARIANTS = {"amd64": ("v1",), "arm64": ("8", "v8")}

_KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux netbsd openbsd "
    "plan9 solaris wasip1 windows zos".split()
)
_KNOWN_ARCH = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le "
    "mips64p32 mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


class Platform(NamedTuple):
    """An OCI platform; ``str()`` gives ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def to_dict(self) -> dict[str, str]:
        """The OCI JSON object (``os.version`` and ``variant`` only when set)."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Platform:
        """Read an OCI platform object, as found in an index or image config.

        Empty ``variant`` and ``os.version`` read as None. Raises ``DataError``
        when ``os`` or ``architecture`` is missing or any field is not a string:
        that is bad content, not bad input.
        """
        fields = {}
        for key in ("os", "architecture", "variant", "os.version"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise DataError("platform", repr(dict(d)), f"{key} is not a string")
            fields[key] = value or None
        if fields["os"] is None or fields["architecture"] is None:
            raise DataError("platform", repr(dict(d)), "missing os or architecture")
        return cls(fields["os"], fields["architecture"], fields["variant"], fields["os.version"])


Matcher = Callable[[Platform | None], bool]


def of_config(doc: Mapping[str, object]) -> Platform | None:
    """The platform an image config names, as it spells it (``linux/arm64/v8`` stays so); None
    when it names none. Fields that are not strings name nothing (content is not trusted)."""
    os_, arch, variant = doc.get("os"), doc.get("architecture"), doc.get("variant")
    if not (isinstance(os_, str) and os_ and isinstance(arch, str) and arch):
        return None
    return Platform(os_, arch, variant if isinstance(variant, str) and variant else None)


def normalize(p: Platform) -> Platform:
    """The canonical spelling of ``p``; values this module does not know are kept.

    Lowercases os, architecture and variant; maps architecture aliases
    (``x86_64``, ``aarch64``, ``armhf``, ``i686`` ...); drops a variant that is the
    architecture's baseline (``arm64/v8``, ``amd64/v1``); writes ARM's numeric
    variants as ``v5`` ... ``v8``. ``macos`` is ``darwin``. An ``arm`` without a
    variant keeps none (unlike containerd, which assumes ``v7``): matching
    treats a missing variant as "any".
    """
    os_ = p.os.lower()
    if os_ == "macos":
        os_ = "darwin"
    arch = p.architecture.lower()
    variant = p.variant.lower() if p.variant else None
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = implied or variant
    if variant in _BASELINE_VARIANTS.get(arch, ()):
        variant = None
    elif arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = "v" + variant
    return Platform(os_, arch, variant, p.os_version)


@functools.cache
def host() -> Platform:
    """The platform this process runs on: linux and the machine's architecture."""
    import platform

    return normalize(Platform("linux", platform.machine() or "unknown"))


def no_manifest(image_name: str, platform: str | None) -> NotFound:
    """The error of an image without a manifest for ``platform`` (the host's when None), as
    pull, push, import and export all report it (containerd: "no match for platform")."""
    return NotFound("platform", platform or str(host()), f"{image_name} has no manifest for it")


def parse(spec: str) -> Platform:
    """Parse a user's ``os/arch[/variant]``, ``arch`` or ``os``, normalised.

    A lone architecture gets os ``linux``; a lone os gets the host's
    architecture and variant. Raises ``InvalidArgument("platform", spec, why)``
    for empty or malformed components, more than three of them, or a lone word
    that is neither a known os nor a known architecture.
    """
    parts = spec.split("/")
    if len(parts) > 3:
        raise InvalidArgument("platform", spec, "expected os/arch[/variant]")
    for part in parts:
        if not _COMPONENT_RE.fullmatch(part):
            raise InvalidArgument(
                "platform", spec, "expected os/arch[/variant] of letters, digits, '_' and '-'"
            )
    if len(parts) > 1:
        return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    word = normalize(Platform(parts[0], parts[0]))
    if word.os in _KNOWN_OS:
        here = host()
        return Platform(word.os, here.architecture, here.variant)
    arch = normalize(Platform("linux", parts[0]))
    if arch.architecture in _KNOWN_ARCH:
        return arch
    raise InvalidArgument("platform", spec, "unknown operating system or architecture")


def matcher(target: Platform) -> Matcher:
    """A predicate for descriptors' platforms that can run as ``target``.

    Matches when the normalised os and architecture are equal and the variants
    are equal or either side has none. A descriptor without a platform (None)
    does not match.
    """
    want = normalize(target)

    def match(p: Platform | None) -> bool:
        if p is None:
            return False
        have = normalize(p)
        return (
            have.os == want.os
            and have.architecture == want.architecture
            and (have.variant is None or want.variant is None or have.variant == want.variant)
        )

    return match


def any_platform(p: Platform | None) -> bool:
    """The matcher for ``--all-platforms``: everything, including no platform."""
    return True


def sort_key(p: Platform) -> tuple[str, str, str, str]:
    """Orders platforms by os, architecture, variant, os version."""
    return (p.os, p.architecture, p.variant or "", p.os_version or "")


def format_all(ps: Iterable[Platform]) -> list[str]:
    """The distinct ``str()`` of ``ps``, sorted by ``sort_key``."""
    unique: dict[str, Platform] = {}
    for p in ps:
        unique.setdefault(str(p), p)
    return [text for text, _ in sorted(unique.items(), key=lambda item: sort_key(item[1]))]
