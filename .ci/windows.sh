#!/usr/bin/env bash
# Windows (x86_64) leg of CI, under Wine: runs a Windows subset of the tests
# with Deno's Windows build. Wine 10 comes from Debian trixie, in a chroot made
# by debootstrap (Deno's Windows build does not start under bookworm's Wine 8);
# deno.exe comes from npm (@deno/win32-x64). Both are cached, in
# ${XDG_CACHE_HOME:-~/.cache}/asyncore-ci. When something cannot be set up (no
# root, no debootstrap, no npm, no Debian mirror) it says why and skips.
#
#   bash .ci/windows.sh [COUNTS_FILE]
#
# The last line is "windows: N passed, N failed" (or "windows: skipped: why");
# the two numbers are also written to COUNTS_FILE, for .ci/run to add to its
# total. The subset: the ffi tests that apply to Windows, the dispatcher matrix
# on select and WSAPoll, timers and loopAsync, tests/windows_test.ts, all run
# inside Wine; then the echo, HTTP client and chat examples run under Wine
# and are driven by Linux peers (python3, nc, Deno.connect) from the Linux
# side. Each Winsock call costs about 100 us under Wine, so the million-call
# tests are scaled down (ASYNCORE_TEST_SCALE).
set -u
cd "$(dirname "$0")/.."
export NO_COLOR=1

DENO_VERSION=2.9.6
counts_file=${1:-/dev/null}
echo "0 0" >"$counts_file"
repo=$(pwd -P)
shared="$(dirname "$repo")/shared"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/asyncore-ci"
root="$cache/wine-trixie"
deno_exe="$cache/deno-win32-x64-$DENO_VERSION/deno.exe"

log() { printf '\n== windows: %s\n' "$*"; }

mounts=()
mirror_pid=""
run_dir=""
cleanup() {
  if [ -n "$run_dir" ] && [ -x "$root/usr/bin/wineserver" ]; then
    chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin WINEPREFIX=/root/wineprefix \
      wineserver -k >/dev/null 2>&1 || true
  fi
  [ -n "$mirror_pid" ] && kill "$mirror_pid" 2>/dev/null
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null
  done
  mounts=()
  [ -n "$run_dir" ] && rm -rf "$run_dir"
}
trap cleanup EXIT

skip() {
  echo "windows: skipped: $*"
  exit 0
}

# Bind-mounts $1 at the same path inside the chroot $2 (default: the cache's).
bind() {
  local target="${2:-$root}$1"
  mkdir -p "$target" && mount --bind "$1" "$target" || return 1
  mounts+=("$target")
}

# Nothing may be mounted below a chroot that is about to be deleted: rm would
# go through a bind mount into /dev or the work tree.
safe_remove() {
  if grep -q " $1/" /proc/mounts; then
    echo "windows: not removing $1: something is still mounted below it" >&2
    return 1
  fi
  rm -rf "$1"
}

setup_chroot() {
  [ -x "$root/usr/lib/wine/wine64" ] && [ -f "$root/etc/hosts" ] && return 0
  if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || skip "debootstrap is missing and apt-get is not available"
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq debootstrap \
      >/dev/null 2>&1 || skip "apt-get could not install debootstrap"
  fi
  local tmp="$root.tmp"
  safe_remove "$tmp" || skip "a half-built chroot at $tmp still has mounts"
  log "debootstrap --variant=minbase trixie (Wine 10)"
  mkdir -p "$cache"
  debootstrap --variant=minbase trixie "$tmp" >"$cache/debootstrap.log" 2>&1 ||
    skip "debootstrap of Debian trixie failed (see $cache/debootstrap.log)"
  log "installing wine64 and wine in the chroot"
  bind /proc "$tmp" && bind /dev "$tmp" || skip "cannot bind-mount /proc and /dev into the chroot"
  chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends wine64 wine >"$cache/wine-install.log" 2>&1
  local status=$?
  cleanup_mounts_only
  [ "$status" -eq 0 ] || skip "apt-get install wine64 wine failed in the chroot (see $cache/wine-install.log)"
  # minbase has no /etc/hosts: Windows resolves localhost, and so must Wine.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
  mv "$tmp" "$root"
}

cleanup_mounts_only() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null
  done
  mounts=()
}

fetch_deno() {
  [ -f "$deno_exe" ] && return 0
  command -v npm >/dev/null 2>&1 || skip "npm is not available to fetch @deno/win32-x64"
  log "fetching @deno/win32-x64@$DENO_VERSION from npm"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q "@deno/win32-x64@$DENO_VERSION" >/dev/null 2>&1 && tar xzf ./*.tgz) || {
    rm -rf "$tmp"
    skip "npm pack @deno/win32-x64@$DENO_VERSION failed"
  }
  mkdir -p "$(dirname "$deno_exe")" && mv "$tmp/package/deno.exe" "$deno_exe"
  rm -rf "$tmp"
}

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || skip "Wine runs Deno's x86_64 build on Linux x86_64 only"
[ "$(id -u)" -eq 0 ] || skip "a chroot and bind mounts need root"
command -v deno >/dev/null 2>&1 || skip "no native deno to run the Linux side"
setup_chroot
fetch_deno

start=$(date +%s)
run_dir=$(mktemp -d "$root/tmp/asyncore-ci.XXXXXX") || skip "cannot make a run directory in the chroot"
in_root=${run_dir#"$root"}
mkdir -p "$root/opt/deno" && cp -u "$deno_exe" "$root/opt/deno/deno.exe"
bind /proc && bind /dev && bind "$repo" || skip "cannot bind-mount /proc, /dev and the work tree"
[ -d "$shared" ] && bind "$shared"
mkdir -m 700 "$run_dir/xdg"

# The std packages for the tests: the mirror beside the checkout when there is
# one (its server reads paths as a Linux process must, so it runs natively).
if [ -f "$shared/jsr-mirror/serve.ts" ]; then
  deno run --allow-net=127.0.0.1 --allow-read "$shared/jsr-mirror/serve.ts" 0 >"$run_dir/mirror.out" 2>&1 &
  mirror_pid=$!
  for _ in $(seq 1 300); do
    JSR_URL=$(sed -nE 's/^listening (\S+).*/\1/p' "$run_dir/mirror.out")
    [ -n "$JSR_URL" ] && break
    sleep 0.1
  done
  [ -n "$JSR_URL" ] || skip "the std mirror did not start: $(cat "$run_dir/mirror.out")"
  export JSR_URL
fi

# deno.exe under Wine, as a command the Linux side can run: the work tree is
# mounted at the same path, so the caller's directory is Wine's too; the
# environment is built afresh (a Linux variable such as DENO_CERT would not
# mean the same path there), passing on only what the tests read.
wine_deno="$run_dir/deno-wine"
cat >"$wine_deno" <<EOF
#!/bin/sh
exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root WINEPREFIX=/root/wineprefix \\
  WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" XDG_RUNTIME_DIR="$in_root/xdg" NO_COLOR=1 \\
  DENO_DIR='C:\\deno-dir' \${JSR_URL:+JSR_URL=\$JSR_URL} \\
  \${ASYNCORE_TEST_SCALE:+ASYNCORE_TEST_SCALE=\$ASYNCORE_TEST_SCALE} \\
  \${ASYNCORE_TEST_POLLERS:+ASYNCORE_TEST_POLLERS=\$ASYNCORE_TEST_POLLERS} \\
  sh -c 'cd "\$0" && exec wine /opt/deno/deno.exe "\$@"' "\$PWD" "\$@"
EOF
chmod +x "$wine_deno"

log "preparing the Wine prefix"
# A persistent wineserver spares each deno.exe start a second.
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root WINEPREFIX=/root/wineprefix \
  XDG_RUNTIME_DIR="$in_root/xdg" wineserver -p >/dev/null 2>&1
version=$(timeout 120 "$wine_deno" --version 2>/dev/null | head -1)
printf '%s\n' "$version" | grep -q "x86_64-pc-windows-msvc" ||
  skip "deno.exe does not start under Wine: '$version'"
echo "$version (under $(chroot "$root" wine --version 2>/dev/null))"

passed=0
failed=0
count() { # output file, exit status
  local summary p f
  summary=$(tr -d '\r' <"$1" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
  p=$(printf '%s' "$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
  f=$(printf '%s' "$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
  p=${p:-0}
  f=${f:-0}
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed or timed out
  passed=$((passed + p))
  failed=$((failed + f))
}

# Under Wine: `deno test` with Deno's Windows build (type checks ran natively).
wine_tests() { # name, then the arguments of `deno test`
  local name=$1 out status
  shift
  log "$name (under Wine)"
  out=$(mktemp)
  timeout 600 "$wine_deno" test -P --no-check "$@" 2>&1 | grep -v '^Download ' | tee "$out"
  status=${PIPESTATUS[0]}
  count "$out" "$status"
  rm -f "$out"
}

# On Linux, running the examples under Wine.
linux_tests() { # name, then the arguments of `deno task test`
  local name=$1 out status
  shift
  log "$name (examples under Wine, Linux peers)"
  out=$(mktemp)
  ASYNCORE_EXAMPLE_DENO="$wine_deno" timeout 600 deno task test "$@" 2>&1 |
    grep -v '^Download ' | tee "$out"
  status=${PIPESTATUS[0]}
  count "$out" "$status"
  rm -f "$out"
}

export ASYNCORE_TEST_SCALE=0.01 ASYNCORE_TEST_POLLERS=select,poll
wine_tests "ffi tests and Windows facts" tests/ffi_structs_test.ts tests/ffi_socket_test.ts \
  tests/ffi_pollers_test.ts tests/ffi_errors_test.ts tests/windows_test.ts
wine_tests "asyncore matrix on select and WSAPoll" '--filter=/^TestAPI_Use\w+(Select|Poll):/' \
  tests/asyncore_matrix_test.ts
wine_tests "timers and loopAsync" tests/timers_test.ts tests/loop_async_test.ts
linux_tests "echo, HTTP client and chat" \
  '--filter=/^(examples\/echo\.ts: serves|examples\/http_client\.ts: (fetches|a missing)|chat example)/' \
  tests/examples_test.ts tests/chat_example_test.ts

echo "$passed $failed" >"$counts_file"
echo "windows took $(($(date +%s) - start)) s"
echo "windows: $passed passed, $failed failed"
