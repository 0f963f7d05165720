#!/usr/bin/env bash
# The Debian package installs and runs: `make deb-check` (after `make deb`).
#
# Lists the package (dpkg-deb -I, -c), unpacks it into a scratch root with
# dpkg -x, checks that every file is in its FHS place (binaries, gzipped man
# pages that groff reads, completions, units, the conffile, docs), then runs
# the unpacked echod: --version, and a daemon on 127.0.0.1:0 that answers the
# unpacked echod-client and exits 0 on SIGTERM.
#
# With --install (make deb-install-check) it also installs the package for
# real with dpkg -i, runs /usr/bin/echod --version and purges it again:
# that changes this machine, so it is never done by default.
set -euo pipefail
cd "$(dirname "$0")/.."

install=false
[ "${1:-}" = "--install" ] && install=true

fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
ok() { echo "deb-check: ok: $*"; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
deb=$(ls -t target/debian/echod_"${version}"*_*.deb 2>/dev/null | head -n1 || true)
[ -n "$deb" ] || fail "no target/debian/echod_${version}*.deb: run make deb first"
echo "deb-check: $deb"

scratch=$(mktemp -d /tmp/echod-deb-check.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- the control file and the listing ---------------------------------------
dpkg-deb -I "$deb" > "$scratch/info"
dpkg-deb -c "$deb" > "$scratch/contents"
sed 's/^/  /' "$scratch/info"
grep -q '^ Package: echod$' "$scratch/info" || fail "control: Package is not echod"
grep -q "^ Version: ${version}" "$scratch/info" || fail "control: Version is not ${version}"
grep -q '^ Depends: .*libc6' "$scratch/info" || fail "control: no libc6 dependency"
dpkg-deb -e "$deb" "$scratch/control"
grep -qx '/etc/default/echod' "$scratch/control/conffiles" || fail "/etc/default/echod is not a conffile"
for script in "$scratch"/control/{preinst,postinst,prerm,postrm}; do
  if [ -f "$script" ]; then sh -n "$script" || fail "$(basename "$script") is not valid sh"; fi
done
# The systemd hooks (dh_installsystemd's): daemon-reload, units known to
# deb-systemd-helper but enabled only if the admin had enabled them, and on
# upgrade restarted only if running (try-restart), never started.
grep -q 'deb-systemd-helper --quiet was-enabled echod.service' "$scratch/control/postinst" 2>/dev/null ||
  fail "postinst has no systemd hook for echod.service"
if grep -Eq 'deb-systemd-invoke (start|restart) |systemctl [^|]*(start|enable) ' "$scratch/control/postinst"; then
  fail "postinst starts or enables a unit: the admin does that"
fi
grep -q 'daemon-reload' "$scratch/control/postrm" 2>/dev/null || fail "postrm does not reload systemd"
ok "control: echod ${version}, libc6 dependency, conffile, systemd hooks (no enable, no start), scripts parse"

# --- every file in its place ------------------------------------------------
root="$scratch/root"
dpkg -x "$deb" "$root"
expect=(
  usr/bin/echod usr/bin/echod-client usr/bin/echod-bench
  etc/default/echod
  usr/share/doc/echod/README.md usr/share/doc/echod/copyright
  usr/share/doc/echod/docs/OPERATIONS.md
)
units=$(find "$root" -path '*/systemd/system/*' -type f | sed "s|^$root/||")
echo "$units" | grep -q 'systemd/system/echod.service$' || fail "no echod.service under lib/systemd/system"
for tool in echod echod-client echod-bench; do
  expect+=(
    "usr/share/man/man1/$tool.1.gz"
    "usr/share/bash-completion/completions/$tool"
    "usr/share/zsh/vendor-completions/_$tool"
    "usr/share/fish/vendor_completions.d/$tool.fish"
  )
done
for f in "${expect[@]}"; do
  [ -s "$root/$f" ] || fail "missing or empty: /$f"
done
for tool in echod echod-client echod-bench; do
  [ -x "$root/usr/bin/$tool" ] || fail "/usr/bin/$tool is not executable"
  if command -v readelf >/dev/null && readelf -S --wide "$root/usr/bin/$tool" | grep -q '\.debug_info'; then
    fail "/usr/bin/$tool is not stripped (its debug info belongs in the -dbgsym package)"
  fi
  if command -v groff >/dev/null; then
    warnings=$(zcat "$root/usr/share/man/man1/$tool.1.gz" | groff -man -Tutf8 -ww -z 2>&1) ||
      fail "groff cannot read $tool.1.gz"
    [ -z "$warnings" ] || fail "groff warns on $tool.1.gz: $warnings"
  fi
  bash -n "$root/usr/share/bash-completion/completions/$tool" || fail "bash completion of $tool"
done
ok "files: ${#expect[@]} in place, plus $(echo "$units" | wc -l) systemd unit(s): $(echo $units | tr '\n' ' ')"

# --- the unpacked echod runs ------------------------------------------------
out=$("$root/usr/bin/echod" --version)
[ "$out" = "echod ${version}" ] || fail "echod --version said '$out'"
ok "usr/bin/echod --version: $out"

log="$scratch/echod.log"
"$root/usr/bin/echod" -l 127.0.0.1:0 2> "$log" &
pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || fail "echod exited: $(cat "$log")"
  sleep 0.1
done
[ -n "$addr" ] || fail "no 'listening on' line in 10 s: $(cat "$log")"
ok "echod: listening on $addr"
reply=$(printf 'hello from the package\n' | timeout 10 "$root/usr/bin/echod-client" --timeout 5 "$addr")
[ "$reply" = "hello from the package" ] || fail "echod-client got '$reply'"
ok "usr/bin/echod-client: echoed"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "echod exited $status after SIGTERM: $(cat "$log")"
grep -q 'stats: accepted=1 ' "$log" || fail "no stats line: $(cat "$log")"
ok "echod: SIGTERM, exit 0, stats line"

# --- optional: a real install -----------------------------------------------
if $install; then
  if dpkg-query -W -f='${Status}' echod 2>/dev/null | grep -q 'install ok installed'; then
    fail "echod is already installed on this machine; not touching it"
  fi
  dpkg -i "$deb"
  /usr/bin/echod --version | grep -qx "echod ${version}" || fail "installed /usr/bin/echod --version"
  man -w echod >/dev/null || fail "man -w echod finds no page"
  dpkg -P echod
  [ ! -e /usr/bin/echod ] || fail "/usr/bin/echod left after dpkg -P"
  ok "dpkg -i, /usr/bin/echod --version, man -w echod, dpkg -P"
fi

echo "deb-check: passed"
