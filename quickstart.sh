#!/usr/bin/env bash
# The main job on a bundled example, offline: install dist, pack Debian's static busybox into
# an image, list it, create a container from it and run a task in it. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")"
tools/install.sh

export PATH="$PWD/.venv/bin:$PATH"
export DIST_ROOT=${DIST_ROOT:-$PWD/.quickstart/root} DIST_STATE=${DIST_STATE:-/run/dist-quickstart}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
examples/busybox-rootfs.sh "$rootfs"

step() { printf '\n$'; printf ' %q' "$@"; printf '\n'; "$@"; }
step dist images import --rootfs "$rootfs" --name busybox --config-cmd /bin/sh
step dist images
dist container rm -f hello >/dev/null 2>&1 || true
step dist container create --label demo=quickstart busybox hello -- sh -c 'echo "hello from $(hostname), pid $$"'
step dist container ls
step dist task start hello
step dist run --rm busybox hello-again -- sh -c 'cat /etc/os-release 2>/dev/null || echo "busybox $(busybox | head -1 | cut -d" " -f2)"'
step dist container rm hello
