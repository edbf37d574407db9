#!/usr/bin/env bash
# Install the reference servers and the load generator the benchmarks compare against:
# wrk, Varnish and nginx from Debian. Idempotent and quiet: does nothing when all three are
# present; otherwise runs `apt-get update` once, then installs only what is missing.
#
# The packages' own services are never started (their default configs listen on public ports):
# while installing, a policy-rc.d that refuses service starts is put in place when the machine
# has none, and removed again afterwards. The benchmarks start their own instances on 127.0.0.1.
set -euo pipefail

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/varnishd ] || command -v varnishd >/dev/null 2>&1 || need+=(varnish)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo --non-interactive bash "$0" "$@"
    fi
    echo "install_refs.sh: need root (or sudo) to install: ${need[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_refs.sh: no apt-get; install these by hand: ${need[*]}" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
fi
cleanup() {
    if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

log=$(mktemp)
if ! {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
} >"$log" 2>&1; then
    echo "install_refs.sh: apt-get failed installing: ${need[*]}" >&2
    tail -n 20 "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
echo "install_refs.sh: installed ${need[*]}"
