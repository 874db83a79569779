"""Docker/OCI image references: parse, validate and normalise.

A reference is ``[domain/]path[:tag][@digest]``. Parsing applies Docker's
normalisation, so ``busybox`` and ``docker.io/library/busybox:latest`` are the
same image and every stored name is the long form:

* the first component is the domain only when it contains ``.`` or ``:``, is
  ``localhost``, or has an upper-case letter (a repository component cannot);
  otherwise the domain is ``docker.io``;
* ``index.docker.io`` is spelt ``docker.io``;
* a one-component path on ``docker.io`` gets ``library/``;
* a reference with neither tag nor digest gets the tag ``latest``.

The grammar is the distribution project's: lowercase path components
separated by ``/``, ASCII tags of at most 128 characters, digests the content
store understands, and at most 255 characters for ``domain/path``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from dist_tool.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_LEGACY_DOMAIN = "index.docker.io"
_DOCKER_HUB_HOST = "registry-1.docker.io"
_OFFICIAL_PREFIX = "library/"

_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?",
    re.ASCII,
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([0-9a-f]+)", re.ASCII)
_HEX64_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)

# The algorithms a digest may name, with the length of their hex encoding.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class Reference(NamedTuple):
    """A parsed, normalised reference; ``str()`` gives the canonical spelling.

    ``tag`` and ``digest`` may both be set (``a/b:t@sha256:...``); after
    ``parse()`` at least one of them is.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository: ``domain/path`` without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse(ref: str) -> Reference:
    """Parse and Docker-normalise ``ref``.

    Raises ``InvalidArgument("reference", ref, why)`` for anything that is not
    a well-formed reference: empty, uppercase or otherwise invalid path, bad
    domain, tag or digest, or a name longer than 255 characters.
    """
    if not ref:
        raise InvalidArgument("reference", ref, "must not be empty")
    # Docker refuses a bare 64-hex name: it would read as an image ID.
    if _HEX64_RE.fullmatch(ref):
        raise InvalidArgument(
            "reference", ref, "a 64-character hexadecimal string is not a repository name"
        )
    remainder, at, digest = ref.partition("@")
    if at:
        _check_digest(ref, digest)
    name, tag = remainder, None
    colon = remainder.rfind(":")
    # A colon before the last slash belongs to the domain's port, not a tag.
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument("reference", ref, f"invalid tag {tag!r}")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument("reference", ref, f"invalid domain {domain!r}")
    port = domain.rpartition("]")[2].partition(":")[2]
    if port and not 0 < int(port) < 65536:  # the grammar takes any digits; a registry's port cannot be
        raise InvalidArgument("reference", ref, f"port {port} is out of range (1-65535)")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    _check_path(ref, path)
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidArgument(
            "reference", ref, f"repository name must be at most {NAME_MAX} characters"
        )
    if tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest if at else None)


def normalize(ref: str) -> str:
    """The canonical spelling of ``ref``; raises like ``parse()``."""
    return str(parse(ref))


def is_full_reference(value: str) -> bool:
    """Whether an ``org.opencontainers.image.ref.name`` value is a whole reference.

    The annotation may hold just a tag (``latest``, ``v1.0``); it names an
    image by itself only when it has a ``/``, ``:`` or ``@`` and parses.
    """
    if not any(sep in value for sep in "/:@"):
        return False
    try:
        parse(value)
    except InvalidArgument:
        return False
    return True


def registry_host(ref: Reference) -> str:
    """The host serving ``ref``'s registry API (Docker Hub's differs from its name)."""
    return _DOCKER_HUB_HOST if ref.domain == DEFAULT_DOMAIN else ref.domain


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    # distribution/reference's splitDockerDomain: "Localhost/x" and "Reg/x" name hosts, as no
    # repository component may hold an upper-case letter.
    if not slash or not (first == "localhost" or "." in first or ":" in first or first != first.lower()):
        return DEFAULT_DOMAIN, name
    if first == _LEGACY_DOMAIN:
        first = DEFAULT_DOMAIN
    return first, rest


def _check_path(ref: str, path: str) -> None:
    for component in path.split("/"):
        if _PATH_COMPONENT_RE.fullmatch(component):
            continue
        if _PATH_COMPONENT_RE.fullmatch(component.lower()):
            raise InvalidArgument("reference", ref, "repository name must be lowercase")
        if not component:
            raise InvalidArgument("reference", ref, "repository name has an empty component")
        raise InvalidArgument("reference", ref, f"invalid repository name component {component!r}")


def _check_digest(ref: str, digest: str) -> None:
    match = _DIGEST_RE.fullmatch(digest)
    if match is None:
        raise InvalidArgument("reference", ref, f"invalid digest {digest!r}")
    algorithm, hexpart = match.groups()
    want = DIGEST_HEX_LENGTHS.get(algorithm)
    if want is None:
        raise InvalidArgument("reference", ref, f"unsupported digest algorithm {algorithm!r}")
    if len(hexpart) != want:
        raise InvalidArgument(
            "reference", ref, f"a {algorithm} digest needs {want} lowercase hex digits"
        )
