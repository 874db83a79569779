#!/usr/bin/env bash
# Installs what dist and its tests need on a fresh Debian 12 machine (run as root):
# Debian's runc, skopeo, umoci, docker-registry and busybox-static, then a venv in .venv
# with dist and its test extras. Safe to run again: packages already there are not reinstalled,
# and the venv is updated in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(runc skopeo umoci docker-registry apache2-utils openssl busybox-static tar gzip util-linux procps iproute2
              python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "[install] apt: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own interpreter when there is one: it is built with PGO and LTO, and starts and
# imports typer 10-15 % faster here than a plain source build (pyenv's) earlier on PATH.
# Every dist command pays that start-up, and each shim's memory is mostly the interpreter's.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "[install] $PYTHON cannot make a venv with pip (Debian: python3-venv)" >&2
    exit 1
fi
base=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')" != "$base" ]; then
    echo "[install] .venv was made by another interpreter: making it again with $PYTHON" >&2
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    echo "[install] venv: .venv ($PYTHON)" >&2
    "$PYTHON" -m venv .venv
fi
echo "[install] pip: dist with its test extras" >&2
# compat mode: a plain path entry; the default editable finder hook costs ~10 ms per start
.venv/bin/python -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
# Bytecode now, so that no shell setting (PYTHONDONTWRITEBYTECODE) makes every start recompile.
.venv/bin/python -m compileall -q dist_tool >/dev/null
