#!/usr/bin/env bash
# run.sh: `make bench`. Side-by-side benchmarks of little-key-value, Redis 7 and
# etcd 3.4 on this machine, then recovery, memory and checkpoint-stall numbers
# for a million keys. Prints one markdown table; raw numbers go to
# bench/out/<timestamp>.json.
#
#   bash bench/run.sh [--quick] [--compare]
#
# --compare: instead, this build against an earlier commit (BENCH_BASE,
# default the last one before the Raft work) and against itself, single
# node, PUT c1 / PUT c64 / GET c64 (bench/compare.py; BENCH_ROUNDS there
# defaults to 5). --quick: one short round with fewer keys (a smoke test).
# Environment:
# BENCH_ROUNDS (default 3), BENCH_SECONDS (wrk run length, 5), BENCH_PRELOAD
# (keys preloaded for GET, 20000), BENCH_KEYS (recovery/memory/stall key
# count, 1000000), BENCH_STALL_SECONDS (8), BENCH_TMPDIR (where the scratch
# directory goes; default build/, on the same file system as ./data).
#
# Every server started here listens on 127.0.0.1 only, and is stopped on exit
# along with its scratch directory, however the run ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

quick=()
script=bench/bench.py
tools=(wrk redis-server redis-benchmark redis-cli etcd)
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    --compare) script=bench/compare.py; tools=(wrk git) ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || {
    echo "run.sh: $tool is missing; run scripts/setup.sh --with-bench" >&2; exit 1; }
done
make --no-print-directory build/little-key-value build/bench/fsync_probe >&2

base=${BENCH_TMPDIR:-$root/build}
mkdir -p "$base"
tmp=$(mktemp -d "$base/bench.XXXXXX")
pidfile=$tmp/pids
: >"$pidfile"

# Kills what bench.py started and did not stop (it stops everything itself
# unless it is killed outright). A pid is only signalled while its command
# line still names our scratch directory, so a recycled pid is left alone.
cleanup() {
  local pid
  while read -r pid; do
    [ -n "$pid" ] || continue
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$tmp"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cmd="bash bench/run.sh${quick:+ --quick}"
[ "$script" = bench/compare.py ] && cmd="$cmd --compare"
if [ -n "${MAKELEVEL:-}" ]; then
  cmd="make bench"
  [ "$script" = bench/compare.py ] && cmd="make bench-compare"
fi
for v in BENCH_ROUNDS BENCH_SECONDS BENCH_PRELOAD BENCH_KEYS BENCH_STALL_SECONDS BENCH_BASE; do
  [ -n "${!v:-}" ] && cmd="$v=${!v} $cmd"
done
start=$(date +%s)
/usr/bin/python3 "$script" --tmp "$tmp" --pidfile "$pidfile" --out bench/out \
  --command "$cmd" "${quick[@]}"
echo "run.sh: done in $(( $(date +%s) - start )) s" >&2
