"""The shim's kernel helpers that need no kernel: fitting overlay options into one page."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dist_tool.shim import host

names = st.text(st.characters(blacklist_characters="/:,\x00", blacklist_categories=("Cs",)), min_size=1, max_size=8)
absolute_paths = st.lists(names, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))


@given(st.lists(absolute_paths, min_size=1, max_size=20))
def test_the_common_directory_is_above_every_path(paths: list[str]) -> None:
    base = host._common_directory(paths)
    if base is None:  # then no directory but "/" is above them all
        first = paths[0].split("/")[1]
        assert not all(p.count("/") >= 2 and p.split("/")[1] == first for p in paths)
        return
    assert base.startswith("/") and base != "/"
    for path in paths:
        assert path.startswith(base + "/") and len(path) > len(base) + 1


def _lowerdir(base: str, count: int) -> list[str]:
    return [f"lowerdir={':'.join(f'{base}/{i}/fs' for i in range(count, 0, -1))}",
            f"upperdir={base}/900/fs", f"workdir={base}/900/work"]


def test_options_that_fit_are_left_as_they_are() -> None:
    options = _lowerdir("/var/lib/dist/snapshots/overlayfs", 3)
    assert host._fit_in_a_page(options, "mount") == (options, None)


def test_lower_directories_past_a_page_are_named_from_the_directory_they_share() -> None:
    base = "/var/lib/dist/snapshots/overlayfs"
    options = _lowerdir(base, 200)
    assert len(",".join(options)) > host.PAGE_SIZE
    fitted, where = host._fit_in_a_page(options, "mount")
    assert where == base
    assert fitted[0] == "lowerdir=" + ":".join(f"{i}/fs" for i in range(200, 0, -1))
    assert fitted[1:] == options[1:]  # upper and work directories stay absolute
    assert len(",".join(fitted)) < host.PAGE_SIZE


def test_what_cannot_fit_even_so_is_an_error_naming_the_count() -> None:
    with pytest.raises(host.HostError, match=r"mount x: .* \(2000 lower directories\)"):
        host._fit_in_a_page(_lowerdir("/var/lib/dist/snapshots/overlayfs", 2000), "mount x")
