#!/usr/bin/env bash
# What the tests need from the system, one "command package" pair a line.
# When a command is missing: as root with apt-get, one `apt-get update` and
# one `apt-get install -y` of the whole list; otherwise a warning (the tests
# that need it say SKIPPED, or fail when CI is set). Used by .ci/run and by
# `make test-deps`, so the two install the same things.
set -euo pipefail
deps=(
  "nc netcat-openbsd"   # real_tools: nc against echod
  "telnet telnet"       # real_tools: telnet against echod
  "python3 python3"     # the seeds' clients
  "ip iproute2"         # faults: network namespaces and the veth pair
  "nft nftables"        # faults: the packet-loss rule (no netem on this kernel)
  "systemd-socket-activate systemd"  # systemd: socket activation without systemd running
  "systemd-analyze systemd"          # systemd: verify and security of dist/systemd units
  "zsh zsh"             # echod-dist: the generated zsh completions parse
  "fish fish"           # echod-dist: the generated fish completions parse
  "groff groff-base"    # echod-dist: the generated man pages parse
  "promtool prometheus" # metrics: promtool checks a scrape, a real Prometheus scrapes echod
  "sockperf sockperf"   # sockperf mode: the real sockperf client measures echod
  "haproxy haproxy"                  # scale_out: three echods behind HAProxy
  "py:yaml python3-yaml"  # k8s: the manifests parse as YAML (a python module, not a command)
)
packages=()
missing=()
for dep in "${deps[@]}"; do
  read -r cmd package <<<"$dep"
  packages+=("$package")
  case "$cmd" in
    py:*) python3 -c "import ${cmd#py:}" >/dev/null 2>&1 || missing+=("$cmd") ;;
    *) command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update
  apt-get install -y "${packages[@]}"
else
  echo "WARNING: ${missing[*]} missing (install: ${packages[*]}); their tests will say SKIPPED" >&2
fi
