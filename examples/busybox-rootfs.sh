#!/usr/bin/env bash
# busybox-rootfs.sh DIR: a minimal root filesystem from Debian's busybox-static, for
# `dist images import --rootfs DIR` (no network needed).
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
busybox=${BUSYBOX:-/bin/busybox}
mkdir -p "$dir"/{bin,etc,root,tmp,dev,proc,sys}
chmod 1777 "$dir/tmp"
install -m 0755 "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
echo dist-example >"$dir/etc/hostname"
