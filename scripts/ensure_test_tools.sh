#!/usr/bin/env bash
# System tools the operations tests (tests/ops) use, installed from Debian when missing:
#   package systemd: systemd-analyze verifies the unit file
#   package prometheus: promtool parses and unit-tests the alerting rules and PromQL
#   package shellcheck: lints systemd/install.sh
#   package python3-seccomp: runs the daemon under the unit's SystemCallFilter=
# Installing needs root and apt-get; without them this only says what is missing, and the tests
# that need a missing tool skip with the reason.
set -euo pipefail

missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v promtool >/dev/null || missing+=(prometheus)
command -v shellcheck >/dev/null || missing+=(shellcheck)
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing+=(python3-seccomp)
((${#missing[@]})) || exit 0

if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    echo "ensure_test_tools: missing Debian packages ${missing[*]}:" \
        "the tests that need them will skip" >&2
    exit 0
fi
echo "ensure_test_tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends keeps prometheus to the server binaries (no node exporter); where
# services may start (not in a container), its postinst starts a Prometheus server on :9090.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
