"""dist_tool.platforms: normalisation, parsing, matching, ordering, the host."""

from __future__ import annotations

import platform as stdlib_platform

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dist_tool import platforms
from dist_tool.errors import DataError, InvalidArgument
from dist_tool.platforms import Platform


@pytest.fixture
def host_arm64(monkeypatch: pytest.MonkeyPatch):
    """Pretend to run on an aarch64 machine."""
    monkeypatch.setattr(stdlib_platform, "machine", lambda: "aarch64")
    platforms.host.cache_clear()
    yield
    platforms.host.cache_clear()


NORMALIZE = [
    (("linux", "x86_64"), ("linux", "amd64", None)),
    (("linux", "x86-64"), ("linux", "amd64", None)),
    (("linux", "amd64", "v1"), ("linux", "amd64", None)),
    (("linux", "amd64", "v3"), ("linux", "amd64", "v3")),
    (("linux", "aarch64"), ("linux", "arm64", None)),
    (("linux", "arm64", "v8"), ("linux", "arm64", None)),
    (("linux", "arm64", "8"), ("linux", "arm64", None)),
    (("linux", "arm64", "v8.2"), ("linux", "arm64", "v8.2")),
    (("linux", "armhf"), ("linux", "arm", "v7")),
    (("linux", "armel"), ("linux", "arm", "v6")),
    (("linux", "arm", "7"), ("linux", "arm", "v7")),
    (("linux", "arm"), ("linux", "arm", None)),
    (("linux", "armv7l"), ("linux", "arm", "v7")),
    (("linux", "i386"), ("linux", "386", None)),
    (("linux", "i686"), ("linux", "386", None)),
    (("Linux", "AMD64"), ("linux", "amd64", None)),
    (("macos", "arm64"), ("darwin", "arm64", None)),
    (("linux", "ppc64le"), ("linux", "ppc64le", None)),
    (("plan10", "weird"), ("plan10", "weird", None)),
    (("linux", "amd64", ""), ("linux", "amd64", None)),
]


@pytest.mark.parametrize(
    ("given_", "expected"), NORMALIZE, ids=["/".join(filter(None, n[0])) or "x" for n in NORMALIZE]
)
def test_normalize(given_: tuple[str, ...], expected: tuple[str, str, str | None]):
    assert platforms.normalize(Platform(*given_)) == Platform(*expected)


def test_normalize_keeps_os_version():
    p = Platform("windows", "x86_64", None, "10.0.17763")
    assert platforms.normalize(p) == Platform("windows", "amd64", None, "10.0.17763")


PARSE = [
    ("linux/amd64", ("linux", "amd64", None)),
    ("linux/arm/v7", ("linux", "arm", "v7")),
    ("linux/arm64/v8", ("linux", "arm64", None)),
    ("linux/aarch64", ("linux", "arm64", None)),
    ("Linux/X86_64", ("linux", "amd64", None)),
    ("amd64", ("linux", "amd64", None)),
    ("armhf", ("linux", "arm", "v7")),
    ("s390x", ("linux", "s390x", None)),
    ("windows", ("windows", "arm64", None)),
    ("linux", ("linux", "arm64", None)),
    ("freebsd/riscv64", ("freebsd", "riscv64", None)),
    ("someos/somearch", ("someos", "somearch", None)),
]


@pytest.mark.parametrize(("spec", "expected"), PARSE, ids=[p[0] for p in PARSE])
def test_parse_accepts(host_arm64, spec: str, expected: tuple[str, str, str | None]):
    assert platforms.parse(spec) == Platform(*expected)


PARSE_BAD = [
    ("empty", "", "expected os/arch"),
    ("slash", "/", "expected os/arch"),
    ("no-arch", "linux/", "expected os/arch"),
    ("no-os", "/amd64", "expected os/arch"),
    ("four-parts", "linux/arm/v7/x", "expected os/arch"),
    ("space", "linux/amd 64", "expected os/arch"),
    ("dot", "linux/amd64/v8.2", "expected os/arch"),
    ("unknown-word", "potato", "unknown operating system or architecture"),
    ("unicode", "linüx/amd64", "expected os/arch"),
]


@pytest.mark.parametrize(("spec", "why"), [b[1:] for b in PARSE_BAD], ids=[b[0] for b in PARSE_BAD])
def test_parse_rejects(spec: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        platforms.parse(spec)
    err = info.value
    assert (err.what, err.which) == ("platform", spec)
    assert why in err.why
    assert str(err).startswith(f"platform {spec}: " if spec else "platform: ")


def test_host_is_normalised_and_cached(host_arm64):
    assert platforms.host() == Platform("linux", "arm64")
    assert platforms.host() is platforms.host()


def test_host_on_this_machine():
    platforms.host.cache_clear()
    here = platforms.host()
    assert here.os == "linux"
    assert here == platforms.normalize(here)


MATCH = [
    ("same", "linux/amd64", ("linux", "amd64"), True),
    ("alias", "linux/amd64", ("linux", "x86_64"), True),
    ("other-arch", "linux/amd64", ("linux", "arm64"), False),
    ("other-os", "linux/amd64", ("windows", "amd64"), False),
    ("arm64-v8", "linux/arm64", ("linux", "arm64", "v8"), True),
    ("target-v8", "linux/arm64/v8", ("linux", "arm64"), True),
    ("same-variant", "linux/arm/v7", ("linux", "arm", "v7"), True),
    ("other-variant", "linux/arm/v7", ("linux", "arm", "v6"), False),
    ("descriptor-no-variant", "linux/arm/v7", ("linux", "arm"), True),
    ("target-no-variant", "linux/arm", ("linux", "arm", "v6"), True),
    ("armhf", "linux/arm/v7", ("linux", "armhf"), True),
    ("amd64-v3", "linux/amd64", ("linux", "amd64", "v3"), True),
    ("case", "linux/amd64", ("Linux", "AMD64"), True),
]


@pytest.mark.parametrize(
    ("target", "have", "expected"), [m[1:] for m in MATCH], ids=[m[0] for m in MATCH]
)
def test_matcher(target: str, have: tuple[str, ...], expected: bool):
    assert platforms.matcher(platforms.parse(target))(Platform(*have)) is expected


def test_matcher_refuses_none_and_any_platform_takes_all():
    assert platforms.matcher(Platform("linux", "amd64"))(None) is False
    assert platforms.any_platform(None) is True
    assert platforms.any_platform(Platform("plan9", "386")) is True


DICTS = [
    ("minimal", {"os": "linux", "architecture": "amd64"}, Platform("linux", "amd64")),
    (
        "variant",
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        Platform("linux", "arm", "v7"),
    ),
    (
        "os-version",
        {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763"},
        Platform("windows", "amd64", None, "10.0.17763"),
    ),
]


@pytest.mark.parametrize(("d", "p"), [c[1:] for c in DICTS], ids=[c[0] for c in DICTS])
def test_dict_round_trip(d: dict[str, str], p: Platform):
    assert Platform.from_dict(d) == p
    assert p.to_dict() == d


def test_from_dict_reads_empty_as_none_and_ignores_extras():
    d = {"os": "linux", "architecture": "arm64", "variant": "", "os.features": ["x"]}
    assert Platform.from_dict(d) == Platform("linux", "arm64")


@pytest.mark.parametrize(
    "d",
    [
        {"os": "linux"},
        {"architecture": "amd64"},
        {"os": "", "architecture": "amd64"},
        {"os": 1, "architecture": "x"},
    ],
    ids=["no-arch", "no-os", "empty-os", "not-string"],
)
def test_from_dict_rejects(d: dict[str, object]):
    with pytest.raises(DataError) as info:
        Platform.from_dict(d)
    assert info.value.what == "platform"


def test_str_and_format_all():
    ps = [
        Platform("linux", "arm64"),
        Platform("linux", "arm", "v7"),
        Platform("linux", "amd64"),
        Platform("linux", "arm", "v6"),
        Platform("linux", "amd64"),
        Platform("windows", "amd64", None, "10.0"),
        Platform("linux", "386"),
    ]
    assert str(ps[1]) == "linux/arm/v7"
    assert platforms.format_all(ps) == [
        "linux/386",
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64",
        "windows/amd64",
    ]
    assert platforms.format_all([]) == []


# --- properties ---------------------------------------------------------------

_words = st.sampled_from(
    [
        "linux",
        "Linux",
        "windows",
        "amd64",
        "x86_64",
        "aarch64",
        "arm64",
        "arm",
        "armhf",
        "i686",
        "s390x",
        "x",
    ]
)
_variants = st.sampled_from([None, "", "v5", "v6", "7", "v7", "8", "v8", "v3", "V7"])


@given(_words, _words, _variants)
def test_normalize_is_idempotent_and_matches_itself(os_: str, arch: str, variant: str | None):
    once = platforms.normalize(Platform(os_, arch, variant))
    assert platforms.normalize(once) == once
    assert platforms.matcher(once)(Platform(os_, arch, variant))


@given(st.text(max_size=30))
def test_parse_raises_only_invalid_argument(spec: str):
    try:
        p = platforms.parse(spec)
    except InvalidArgument as e:
        assert e.which == spec
    else:
        assert platforms.parse(str(p)) == p


@given(st.lists(st.builds(Platform, _words, _words, _variants), max_size=6))
def test_format_all_sorted_unique(ps: list[Platform]):
    out = platforms.format_all(ps)
    assert len(out) == len(set(out)) == len({str(p) for p in ps})
    assert platforms.format_all(reversed(ps)) == out
