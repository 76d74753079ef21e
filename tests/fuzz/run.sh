#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer binary (ASan + UBSan) in
# build/fuzz/ and runs each for FUZZ_SECONDS (default 60; 10 is the CI smoke
# setting), one after the other. Prints one line per target and exits non-zero
# if any target crashed; crash inputs go to build/fuzz/crashes/.
#
#   FUZZ_SECONDS=N    seconds per target
#   FUZZ_TARGETS="a b" run only these (names without .c), e.g. fuzz_route
#   FUZZ_BUILD_ONLY=1 build, generate seeds, run nothing
#   FUZZ_ARGS="..."   extra libFuzzer flags, e.g. "-fork=1 -ignore_crashes=1" to
#                     keep exploring past a known crash
#   CLANG=path        compiler (default clang)
#
# Reproduce a crash: build/fuzz/<target> build/fuzz/crashes/<target>-crash-...
# A crash input worth keeping as a regression goes to
# tests/fuzz/seeds/<target>/crash-<what broke>; every run replays the seeds.
set -euo pipefail

cd "$(dirname "$0")/../.."
CLANG=${CLANG:-clang}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
OUT=build/fuzz
CRASHES=$OUT/crashes
BASE=(-g -O1 -std=c11 -D_GNU_SOURCE -Isrc -DLKV_VERSION="\"fuzz\"" -pthread
      -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
WARN=(-Wall -Wextra -Wshadow -Wconversion)

# Largest input per target: enough for a few records or segments, small
# enough that the fuzzer mutates structure rather than bulk.
max_len() {
  case "$1" in
    fuzz_meta) echo 64 ;;
    fuzz_route) echo 256 ;;
    fuzz_snap_window) echo 512 ;;
    fuzz_config) echo 512 ;;
    fuzz_kv_cmd) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p "$OUT/obj" "$CRASHES"

# Targets that need files work under here; a crashing target skips its own
# cleanup, so the whole directory goes when the script ends.
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
LKV_FUZZ_TMPDIR=$(mktemp -d "$shm/lkv-fuzz-run.XXXXXX")
export LKV_FUZZ_TMPDIR
trap 'rm -rf "$LKV_FUZZ_TMPDIR"' EXIT

# The sources are compiled here with coverage instrumentation (not taken from
# build/liblkv.a, which gcc builds without it); the archive lets each target
# link only the modules it uses.
echo "fuzz: compiling src/ with $CLANG" >&2
objs=()
for src in $(find src -name '*.c' ! -path src/main.c | sort); do
  obj=$OUT/obj/$(echo "${src%.c}" | tr / _).o
  "$CLANG" "${BASE[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$obj"
  objs+=("$obj")
done
rm -f "$OUT/liblkv-fuzz.a"
ar rcs "$OUT/liblkv-fuzz.a" "${objs[@]}"

targets=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
  for t in $FUZZ_TARGETS; do targets+=("$t"); done
else
  for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

for t in "${targets[@]}"; do
  src=tests/fuzz/$t.c
  [ -f "$src" ] || { echo "fuzz: no such target $src" >&2; exit 2; }
  echo "fuzz: building $t" >&2
  "$CLANG" "${BASE[@]}" "${WARN[@]}" -fsanitize=fuzzer,address,undefined "$src" \
    "$OUT/liblkv-fuzz.a" -lm -o "$OUT/$t"
  corpus=$OUT/corpus-$t
  mkdir -p "$corpus"
  if [ -d "tests/fuzz/seeds/$t" ]; then
    cp -f tests/fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  # A target may carry a generator for seeds that only the real writer can
  # produce (valid CRCs, real segment files); it also runs each seed once.
  if grep -q 'MAKE_SEEDS' "$src"; then
    "$CLANG" "${BASE[@]}" "${WARN[@]}" -DMAKE_SEEDS -fsanitize=address,undefined "$src" \
      "$OUT/liblkv-fuzz.a" -lm -o "$OUT/$t-seeds"
    "$OUT/$t-seeds" "$corpus"
  fi
done

[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

# clear_shadow_mmap_threshold: clearing shadow by memset instead of handing
# its pages back keeps snap_load's 8 MiB read buffer from costing ~500 page
# faults per call (twice the executions per second for fuzz_snap_load).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:clear_shadow_mmap_threshold=1073741824}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
summary=()
for t in "${targets[@]}"; do
  corpus=$OUT/corpus-$t
  log=$OUT/$t.log
  before=$(find "$CRASHES" -name "$t-*" | wc -l)
  echo "fuzz: running $t for ${SECONDS_PER_TARGET}s (log $log)" >&2
  rc=0
  "$OUT/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$CRASHES/$t-" ${FUZZ_ARGS:-} \
    "$corpus" >"$log" 2>&1 || rc=$?
  after=$(find "$CRASHES" -name "$t-*" | wc -l)
  crashes=$((after - before))
  # A failure that left no input behind (a harness that cannot start) still fails.
  [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  # -fork mode prints no final stats; its last status line has the count.
  [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9][0-9]*\)[:\t ].*/\1/p' "$log" | tail -n 1)
  line=$(printf '%-16s seconds=%-5s executions=%-10s crashes=%s' "$t" "$SECONDS_PER_TARGET" \
    "${execs:-?}" "$crashes")
  summary+=("$line")
  if [ "$crashes" -ne 0 ]; then
    status=1
    echo "fuzz: $t FAILED; see $log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*Assertion|.*runtime error)' "$log" | head -n 5 >&2 || true
  fi
done

printf '%s\n' "${summary[@]}"
exit $status
