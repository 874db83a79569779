"""Shared fixtures: private store roots, the busybox rootfs, the umoci/skopeo fixture image."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Dist, UmociImage, build_umoci_image, make_busybox_rootfs
from hypothesis import settings

# Property tests judge results, never speed: hypothesis's 200 ms deadline per example fails on a
# loaded machine, and its own CI profile (which drops it) depends on a CI variable being set.
settings.register_profile("dist", deadline=None)
settings.load_profile("dist")


@pytest.fixture
def dist(tmp_path: Path) -> Dist:
    return Dist(tmp_path / "root")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def umoci_image(tmp_path_factory, busybox_rootfs) -> UmociImage:
    return build_umoci_image(tmp_path_factory.mktemp("umoci"), busybox_rootfs)


@pytest.fixture
def imported(dist, umoci_image) -> UmociImage:
    dist.ok("images", "import", "--no-unpack", str(umoci_image.oci_archive))
    return umoci_image
