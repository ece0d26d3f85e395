#!/usr/bin/env bash
# Linux arm64 (aarch64) leg of CI: runs a subset of the tests under Deno's
# linux-arm64 build. On an x86_64 host it sets up user-mode emulation first
# (Debian's qemu-user and the arm64 libc, the arm64 Deno from npm, a binfmt_misc
# entry so that the binary and the subprocesses the tests spawn run directly);
# on an aarch64 host it uses the installed deno. When something cannot be set up
# (no apt, no npm, no root for binfmt_misc) it says why and skips.
#
#   bash .ci/arm64.sh [COUNTS_FILE]
#
# The last line is "arm64: N passed, N failed" (or "arm64: skipped: why"); the
# two numbers are also written to COUNTS_FILE, for .ci/run to add to its total.
# The subset: the ffi tests, the asyncore matrix on poll and epoll, the examples
# and the interop tests (about 6 minutes here; an FFI call costs ~6 us under
# qemu against ~0.15 us natively, so million-call tests are scaled down).
set -u
cd "$(dirname "$0")/.."
export NO_COLOR=1

DENO_VERSION=2.9.5 # the newest @deno/linux-arm64-glibc on npm when this was written
counts_file=${1:-/dev/null}
echo "0 0" >"$counts_file"

log() { printf '\n== arm64: %s\n' "$*"; }
skip() {
  echo "arm64: skipped: $*"
  exit 0
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

setup_emulation() {
  if ! command -v qemu-aarch64 >/dev/null 2>&1 || [ ! -e /lib/ld-linux-aarch64.so.1 ]; then
    command -v apt-get >/dev/null 2>&1 || skip "qemu-aarch64 or the arm64 libc is missing and apt-get is not available"
    log "installing qemu-user and libc6:arm64"
    {
      as_root dpkg --add-architecture arm64 &&
        as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user qemu-user-binfmt libc6:arm64
    } >/dev/null 2>&1 || skip "apt-get could not install qemu-user and libc6:arm64"
  fi
  # A C compiler for aarch64 lets tests/ffi_platform_test.ts check the table
  # against the headers; without one that test is ignored.
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    log "installing gcc-aarch64-linux-gnu (for the platform-table test)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu \
      >/dev/null 2>&1 || echo "gcc-aarch64-linux-gnu not installed: the header check is ignored"
  fi
  # binfmt_misc makes an aarch64 ELF run as if native, which the tests need:
  # they spawn Deno.execPath() (the std mirror, the examples, fixtures).
  local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if [ ! -e "$entry" ]; then
    log "registering qemu-aarch64 with binfmt_misc"
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
      as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
    local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    if [ -r "$conf" ] && [ -e /proc/sys/fs/binfmt_misc/register ]; then
      as_root sh -c "cat '$conf' > /proc/sys/fs/binfmt_misc/register" 2>/dev/null
    fi
    [ -e "$entry" ] || skip "cannot register qemu-aarch64 in binfmt_misc (needs root and /proc/sys/fs/binfmt_misc)"
  fi
}

fetch_deno() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/asyncore-ci/deno-linux-arm64-$DENO_VERSION"
  if [ ! -x "$dir/deno" ]; then
    command -v npm >/dev/null 2>&1 || skip "npm is not available to fetch @deno/linux-arm64-glibc"
    log "fetching @deno/linux-arm64-glibc@$DENO_VERSION from npm"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "@deno/linux-arm64-glibc@$DENO_VERSION" >/dev/null 2>&1 &&
      tar xzf ./*.tgz) || {
      rm -rf "$tmp"
      skip "npm pack @deno/linux-arm64-glibc@$DENO_VERSION failed"
    }
    mkdir -p "$dir" && mv "$tmp/package/deno" "$dir/deno" && chmod +x "$dir/deno"
    rm -rf "$tmp"
  fi
  DENO="$dir/deno"
}

case "$(uname -s)-$(uname -m)" in
  Linux-aarch64 | Linux-arm64)
    DENO=$(command -v deno) || skip "no deno on this aarch64 host"
    ;;
  Linux-x86_64)
    setup_emulation
    fetch_deno
    ;;
  *) skip "no way to run Linux arm64 on $(uname -s) $(uname -m)" ;;
esac

"$DENO" --version 2>/dev/null | head -1 | grep -q aarch64 || skip "$DENO does not run as an aarch64 binary"
"$DENO" --version | head -1

# Type checks ran natively already; --no-check spares minutes of tsc under qemu.
export ASYNCORE_TEST_POLLERS=poll,epoll ASYNCORE_TEST_SCALE=0.05
passed=0
failed=0
run_tests() { # name, then the arguments of `deno task test`
  local name=$1
  shift
  log "$name"
  local out status summary p f
  out=$(mktemp)
  timeout 1200 "$DENO" run --allow-run --allow-read --allow-env tests/_run.ts --no-check "$@" 2>&1 |
    grep -v '^Download ' | tee "$out"
  status=${PIPESTATUS[0]}
  summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$out" | tail -1)
  p=$(printf '%s' "$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
  f=$(printf '%s' "$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
  p=${p:-0}
  f=${f:-0}
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed or timed out
  rm -f "$out"
  passed=$((passed + p))
  failed=$((failed + f))
}

start=$(date +%s)
run_tests "ffi tests" tests/ffi_platform_test.ts tests/ffi_structs_test.ts tests/ffi_socket_test.ts \
  tests/ffi_pollers_test.ts tests/ffi_errors_test.ts tests/ffi_msg_test.ts tests/ffi_inet_test.ts \
  tests/ffi_timeout_test.ts tests/ffi_mmsg_test.ts tests/ffi_activation_test.ts
run_tests "asyncore matrix on poll and epoll" '--filter=/^TestAPI_Use\w+(Poll|Epoll):/' \
  tests/asyncore_matrix_test.ts
run_tests "examples and interop" tests/examples_test.ts tests/interop_test.ts

echo "$passed $failed" >"$counts_file"
echo "arm64 took $(($(date +%s) - start)) s"
echo "arm64: $passed passed, $failed failed"
