#!/usr/bin/env bash
# System packages the test suite needs beyond PyPI: Debian's Chromium, which the
# browser tests drive through Playwright (Playwright's own browser download is
# not used: the system binary is). Idempotent: does nothing when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
