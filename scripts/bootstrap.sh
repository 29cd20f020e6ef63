#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root): installs what is missing, then runs.
#   bash scripts/bootstrap.sh demo      -> broker + SQLite + gateway + console + simulated fleet
#   bash scripts/bootstrap.sh test      -> lint, type-check and the whole test suite
#   bash scripts/bootstrap.sh setup     -> only install
set -euo pipefail
cd "$(dirname "$0")/.."
# PyAudio (the softphone's sound card) builds against PortAudio; its test plays through a
# private PulseAudio daemon's null sinks, reached by PortAudio through ALSA's pulse plugin.
APT_PACKAGES=(mosquitto mosquitto-clients libopus0 opus-tools espeak-ng sox postgresql chromium
              gcc libc6-dev python3-dev portaudio19-dev pulseaudio pulseaudio-utils
              libasound2-plugins fonts-noto-cjk)

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if ((${#need_apt[@]})); then
    echo "bootstrap: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Services must not auto-start on the machine's default ports: we run our own instances.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
stamp=.venv/.xixin-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! .venv/bin/pip install -e '.[dev]' > .venv/pip.log 2>&1; then
        tail -40 .venv/pip.log >&2; echo "bootstrap: pip install failed (.venv/pip.log)" >&2; exit 1
    fi
    touch "$stamp"
fi

mode=${1:-setup}
shift || true
case "$mode" in
    setup) echo "bootstrap: ready (.venv/bin/xixin)";;
    demo) exec .venv/bin/xixin up --demo "$@";;
    test)
        .venv/bin/ruff check codec protocol transport devices gateway firmware_sim xixin tests bench
        .venv/bin/ruff format --check codec protocol transport devices gateway firmware_sim xixin tests bench
        .venv/bin/mypy
        .venv/bin/lint-imports --no-cache
        exec .venv/bin/python -m pytest "$@";;
    *) echo "usage: bootstrap.sh setup|demo|test" >&2; exit 2;;
esac
