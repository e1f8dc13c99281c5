#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The sanitizer run (CI runs it after scripts/test.sh): builds everything with AddressSanitizer
# and UndefinedBehaviorSanitizer into build-asan/ and runs the unit, C scenario, exit and output
# suites and a few Python cases there. It fails on any sanitizer report, from any process, even
# one whose test passed: every report is written to a file (log_path) and shown in full.
#
#   scripts/test-sanitize.sh            as root on Debian 12, like scripts/test.sh
#
# How the shim is loaded: it is built with -fsanitize=address,undefined (-Db_lundef=false, as a
# library preloaded into programs that are not built with ASan must), so a process needs libasan
# loaded first. meson's test environment of that build sets $FORKSAFE_TEST_PRELOAD to gcc's
# libasan.so, and tests/lib/forksafe_test.py puts it first in every LD_PRELOAD it builds:
# LD_PRELOAD=libasan.so:libforksafe.so. The test programs (scenarios, c_exit, emitter, ...) are
# built with the sanitizers too, so a run "without the shim" is checked as well.
#
# Settings: every report is fatal (ASan halt_on_error, UBSan -fno-sanitize-recover=all and
# halt_on_error) and aborts the process (abort_on_error: a child that hits one ends with SIGABRT,
# which no scenario mistakes for one of its own exit statuses). LeakSanitizer is off
# (detect_leaks=0): the shim allocates nothing on the heap -- no malloc, no stdio, by design, its
# memory is static or mmap'd, which LeakSanitizer does not track -- so any leak it reports is
# someone else's: CPython's and its extension modules' (memory never freed at exit, with stacks
# cut short in code built without frame pointers, so suppressions by module do not hold), or our
# test programs'. The guard below fails the run if lib/ starts calling a heap allocator: then
# leaks would matter, and this choice must be made again.
#
# Tests left out, each with its reason (SKIP_TESTS), and known failures (KNOWN_FAILURES: run, and
# expected to fail with the message given; anything else -- a pass included -- counts as failed):
# see below. Output: meson's log, each sanitizer report, then one block of counts in meson's words
# (read by .ci/run). Exit status 0 only if every test passed (or failed as known) and there is no
# report.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${FORKSAFE_SANITIZE_BUILD:-build-asan}
JOBS=${FORKSAFE_TEST_JOBS:-4}
REPORTS=$PWD/$BUILD/sanitizer-reports
PY_INTERPS=(debian 3.13)   # Debian's python3 and one pyenv version (absent ones skip)
PY_CASES=(py-lock py-rlock pyreport-named pyrepair-rlock-layer pyreport-embedded)

# Not run under the sanitizers, and why.
declare -A SKIP_TESTS=(
  [c-registry_chain]="gcc 12's ASan runtime is not fork-safe: each generation forks right after starting 1100 threads, some still in ASan's thread start (pthread_getattr_np -> realloc) holding its allocator lock, and the child's new threads block on that lock forever (SizeClassAllocator64::GetFromAllocator), with or without the shim"
  [output-secure]="runs setuid and setgid programs with the shim in /etc/ld.so.preload; the ASan-built shim needs libasan loaded first, which a secure-execution process cannot be given"
)
# Run, expected to fail with this message (an extended regular expression on the test's output).
# With libasan first in LD_PRELOAD, ASan's pthread_create interceptor runs before the shim's and
# hands it ASan's own thread trampoline: every thread's start routine is reported as
# "0x... (libasan.so)", and these tests check that it names the program's function.
START_ROUTINE="start routine is holder_main|-worker start should be|should start at busy_worker"
declare -A KNOWN_FAILURES=(
  [c-held_wait]=$START_ROUTINE [c-held_timedwait]=$START_ROUTINE [c-held_clockwait]=$START_ROUTINE
  [c-errno]=$START_ROUTINE [c-forkpty]=$START_ROUTINE [exit-c]=$START_ROUTINE
  [exit-dump-signal]=$START_ROUTINE
)

./scripts/install-deps.sh
libasan=$(gcc -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "test-sanitize: gcc has no libasan ($libasan): install libasan8" >&2; exit 1; }

# The shim must not use the heap (see LeakSanitizer above).
heap=$(grep -rnE '(^|[^[:alnum:]_.>])(malloc|calloc|realloc|reallocarray|free|strdup|strndup|asprintf|vasprintf|posix_memalign|aligned_alloc|fopen|fdopen|opendir|getline|getdelim)\(' lib \
       | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(//|/?\*)' || true)   # calls, not comments
if [ -n "$heap" ]; then
  echo "test-sanitize: lib/ calls a heap allocator now; LeakSanitizer is off in this run because it did not:" >&2
  echo "$heap" >&2
  exit 1
fi

[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --werror -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=all >/dev/null || exit 1
meson compile -C "$BUILD" >/dev/null || exit 1
echo "built $BUILD (address,undefined; LD_PRELOAD of the tests: $libasan first)"

rm -rf "$REPORTS" "$BUILD"/meson-logs/sanitize-*.json && mkdir -p "$REPORTS" && chmod 1777 "$REPORTS"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=0:log_path=$REPORTS/asan:log_exe_name=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan:log_exe_name=1"

# The tests: the unit, c, exit and output suites, and the Python cases; minus SKIP_TESTS.
mapfile -t all < <(meson test -C "$BUILD" --list 2>/dev/null | sed -n 's|^[^:]*:\([^ ]*\) / \(.*\)$|\1 \2|p')
run=() known=()
for entry in "${all[@]}"; do
  suite=${entry%% *} name=${entry#* }
  want=0
  case $suite in unit|c|exit|output) want=1;; esac
  for c in "${PY_CASES[@]}"; do for v in "${PY_INTERPS[@]}"; do [ "$name" = "$c-$v" ] && want=1; done; done
  [ $want -eq 1 ] || continue
  if [ -n "${SKIP_TESTS[$name]+x}" ]; then echo "left out: $name: ${SKIP_TESTS[$name]}"; continue; fi
  if [ -n "${KNOWN_FAILURES[$name]+x}" ]; then known+=("$name"); else run+=("$name"); fi
done
echo "running ${#run[@]} tests, ${#known[@]} known failures"

meson test -C "$BUILD" --print-errorlogs --num-processes "$JOBS" -t 2 --logbase sanitize-run "${run[@]}"
if [ ${#known[@]} -gt 0 ]; then
  meson test -C "$BUILD" --num-processes "$JOBS" -t 2 --logbase sanitize-known "${known[@]}" >/dev/null
fi

known_spec=$(for n in "${known[@]}"; do printf '%s\t%s\n' "$n" "${KNOWN_FAILURES[$n]}"; done)
python3 scripts/sanitize-summary.py "$BUILD/meson-logs/sanitize-run.json" \
  "$BUILD/meson-logs/sanitize-known.json" "$REPORTS" <<<"$known_spec"
