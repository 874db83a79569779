"""dist_tool.reference: Docker normalisation, the distribution grammar, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dist_tool import reference
from dist_tool.errors import InvalidArgument
from dist_tool.reference import Reference

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"

ACCEPTED = [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/a/b:t", "docker.io", "a/b", "t", None),
    ("user/app:v1.0", "docker.io", "user/app", "v1.0", None),
    ("ghcr.io/o/r/img:tag", "ghcr.io", "o/r/img", "tag", None),
    ("localhost/foo:1", "localhost", "foo", "1", None),
    ("localhost:5000/foo", "localhost:5000", "foo", "latest", None),
    ("host:5000/a/b@" + DIGEST, "host:5000", "a/b", None, DIGEST),
    ("a/b:t@" + DIGEST, "docker.io", "a/b", "t", DIGEST),
    ("busybox@" + DIGEST, "docker.io", "library/busybox", None, DIGEST),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
    ("Example.COM/x", "Example.COM", "x", "latest", None),
    ("Localhost:5000/x", "Localhost:5000", "x", "latest", None),
    ("Localhost/x", "Localhost", "x", "latest", None),
    ("LOCALHOST/a/b:1", "LOCALHOST", "a/b", "1", None),
    ("Registry/x", "Registry", "x", "latest", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("a.b-c--e/f_g", "a.b-c--e", "f_g", "latest", None),
    ("x/a__b.c---d", "docker.io", "x/a__b.c---d", "latest", None),
    ("img:_UPPER-and.dots", "docker.io", "library/img", "_UPPER-and.dots", None),
    ("img:" + "t" * 128, "docker.io", "library/img", "t" * 128, None),
    (
        "sha512ref@sha512:" + "ab" * 64,
        "docker.io",
        "library/sha512ref",
        None,
        "sha512:" + "ab" * 64,
    ),
    ("x/" + "a" * 243, "docker.io", "x/" + "a" * 243, "latest", None),
]


@pytest.mark.parametrize(
    ("ref", "domain", "path", "tag", "digest"), ACCEPTED, ids=[a[0][:40] for a in ACCEPTED]
)
def test_parse_accepts(ref: str, domain: str, path: str, tag: str | None, digest: str | None):
    assert reference.parse(ref) == Reference(domain, path, tag, digest)


REJECTED = [
    ("empty", "", "must not be empty"),
    ("uppercase-path", "Foo/Bar", "lowercase"),
    ("uppercase-single", "Busybox", "lowercase"),
    ("uppercase-after-domain", "ghcr.io/Org/app", "lowercase"),
    ("uppercase-after-upper-domain", "Reg/App", "lowercase"),
    ("space", "busy box", "invalid repository name"),
    ("leading-space", " busybox", "invalid repository name"),
    ("empty-tag", "busybox:", "invalid tag"),
    ("bad-tag-char", "busybox:a+b", "invalid tag"),
    ("tag-leading-dot", "busybox:.x", "invalid tag"),
    ("tag-too-long", "busybox:" + "t" * 129, "invalid tag"),
    ("empty-digest", "busybox@", "invalid digest"),
    ("short-digest", "busybox@sha256:abc", "64 lowercase hex"),
    ("upper-digest", "busybox@sha256:" + HEX64.upper(), "invalid digest"),
    ("unknown-algorithm", "busybox@md5:" + HEX64, "unsupported digest algorithm"),
    ("two-ats", f"busybox@{DIGEST}@{DIGEST}", "invalid digest"),
    ("empty-component", "a//b", "empty component"),
    ("trailing-slash", "docker.io/", "empty component"),
    ("only-tag", ":latest", "empty component"),
    ("bad-separator", "a/b..c", "invalid repository name"),
    ("trailing-separator", "a/b-", "invalid repository name"),
    ("bad-port", "host:port/x", "invalid domain"),
    ("port-too-big", "localhost:65536/x", "port 65536 is out of range"),
    ("port-zero", "[::1]:0/x", "port 0 is out of range"),
    ("bad-domain", "-host.com/x", "invalid domain"),
    ("hex64-name", HEX64, "hexadecimal"),
    ("too-long", "x/" + "a" * 244, "at most 255"),
    ("unicode", "bücher/x", "invalid"),
]


@pytest.mark.parametrize(("ref", "why"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_parse_rejects(ref: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        reference.parse(ref)
    err = info.value
    assert (err.what, err.which) == ("reference", ref)
    assert why in err.why
    assert str(err).startswith(f"reference {ref}: " if ref else "reference: ")


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        (
            Reference("docker.io", "library/busybox", "latest", None),
            "docker.io/library/busybox:latest",
        ),
        (Reference("host:5000", "a/b", None, DIGEST), f"host:5000/a/b@{DIGEST}"),
        (Reference("docker.io", "a/b", "t", DIGEST), f"docker.io/a/b:t@{DIGEST}"),
    ],
    ids=["tag", "digest", "both"],
)
def test_str(ref: Reference, text: str):
    assert str(ref) == text
    assert reference.normalize(text) == text


def test_name_and_normalize():
    ref = reference.parse("busybox@" + DIGEST)
    assert ref.name == "docker.io/library/busybox"
    assert reference.normalize("busybox") == "docker.io/library/busybox:latest"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("latest", False),
        ("v1.0", False),
        ("", False),
        ("busybox:latest", True),
        ("docker.io/library/busybox:latest", True),
        ("localhost/foo:1", True),
        ("busybox@" + DIGEST, True),
        ("Foo:bar", False),
        ("a b/c", False),
    ],
    ids=lambda v: None if isinstance(v, bool) else (v or "empty")[:40],
)
def test_is_full_reference(value: str, expected: bool):
    assert reference.is_full_reference(value) is expected


@pytest.mark.parametrize(
    ("ref", "host"),
    [
        ("busybox", "registry-1.docker.io"),
        ("ghcr.io/a/b", "ghcr.io"),
        ("localhost:5000/x", "localhost:5000"),
    ],
    ids=["hub", "ghcr", "local"],
)
def test_registry_host(ref: str, host: str):
    assert reference.registry_host(reference.parse(ref)) == host


@pytest.mark.parametrize("ref", ["Localhost:5000/x", "LOCALHOST/x", "localHost:80/x", "localhost:5000/x"])
def test_localhost_in_any_case_is_a_local_registry(ref: str):
    """Plain HTTP after a failed TLS handshake is decided on the host name lowercased, as DNS has it."""
    from dist_tool.remote.registry import Registry, is_localhost

    host = reference.registry_host(reference.parse(ref))
    assert host == ref.split("/")[0] and is_localhost(host)
    assert Registry(host)._may_fall_back


# --- properties ---------------------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?", fullmatch=True)
domains = st.one_of(
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", _label, _label),
    st.builds(lambda a, port: f"{a}:{port}", _label, st.integers(1, 65535)),
    st.just("[::1]:5000"),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def references(draw: st.DrawFn) -> tuple[str, str | None, str, str | None, str | None]:
    domain = draw(st.none() | domains)
    path = "/".join(draw(st.lists(path_components(), min_size=1, max_size=3)))
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    text = (f"{domain}/" if domain else "") + path
    text += (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return text, domain, path, tag, digest


@given(references())
def test_valid_references_round_trip(case):
    text, domain, path, tag, digest = case
    try:
        ref = reference.parse(text)
    except InvalidArgument as e:
        # A domain-less path whose first component looks like a host is read as a domain.
        assert domain is None and "." in text.split("/")[0] and "/" in path, e
        return
    if domain is not None:
        assert (ref.domain, ref.path) == (domain, path)
    elif "." not in text.split("/")[0]:
        assert ref.domain == "docker.io"
        assert ref.path == (path if "/" in path else f"library/{path}")
    assert ref.digest == digest
    assert ref.tag == (tag if tag or digest else "latest")
    assert reference.parse(str(ref)) == ref


@given(st.text(max_size=80))
def test_parse_raises_only_invalid_argument(text: str):
    try:
        ref = reference.parse(text)
    except InvalidArgument as e:
        assert e.which == text
    else:
        assert reference.normalize(str(ref)) == str(ref)


@given(references())
def test_normalize_is_idempotent(case):
    text = case[0]
    try:
        once = reference.normalize(text)
    except InvalidArgument:
        return
    assert reference.normalize(once) == once
    assert reference.is_full_reference(once)


_upper_label = st.from_regex(r"[a-z0-9]{0,4}[A-Z][A-Za-z0-9]{0,4}", fullmatch=True)


@given(_upper_label, path_components())
def test_a_first_component_with_an_upper_case_letter_is_the_domain(first: str, path: str):
    """distribution/reference: a repository component is lower case, so such a component is a host."""
    ref = reference.parse(f"{first}/{path}")
    assert (ref.domain, ref.path) == (first, path)


@given(path_components(), path_components())
def test_a_lower_case_first_component_without_dot_or_colon_is_a_docker_hub_path(first: str, path: str):
    if first == "localhost" or "." in first:
        return
    ref = reference.parse(f"{first}/{path}")
    assert (ref.domain, ref.path) == ("docker.io", f"{first}/{path}")


@given(st.sampled_from(["localhost", "127.0.0.1", "[::1]"]), st.none() | st.integers(1, 65535), st.randoms())
def test_a_local_host_is_local_in_any_case(host: str, port: int | None, rnd):
    from dist_tool.remote.registry import is_localhost

    spelt = "".join(c.upper() if rnd.random() < 0.5 else c for c in host) + (f":{port}" if port else "")
    assert is_localhost(spelt)
