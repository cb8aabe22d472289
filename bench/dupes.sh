#!/usr/bin/env bash
# dupes.sh - many files with the same content: the receiver builds them from
# its own chunks (no transfer) and, when they are deleted, looks each one up
# for a twin (a peer's rename arrives as an add and a delete).
#
#   bench/dupes.sh [FILES] [RUNS]          (default: 20000 files, 3 runs)
#
# Each run: FILES files of 13 bytes, all alike, in 100 directories on A; two
# daemons on 127.0.0.1 with fresh homes. Prints the seconds from starting the
# daemons until `sync --wait` returned on both (the copy), then from A's scan
# of their deletion until both were in sync again (the delete), and medians.
# Both used to grow with FILES squared or paid two fsyncs per file
# (docs/benchmarks.md, session 22). Not a test: run it on demand.
set -euo pipefail

FILES=${1:-20000}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LANDROPIC_BIN:-$ROOT/build/landropic}
[ -x "$BIN" ] || { echo "build first: $BIN not found" >&2; exit 1; }
WORK=$(mktemp -d /tmp/lr-dupesbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "dupes.sh: $FILES files, $RUNS runs; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
copies=() deletes=()
for r in $(seq "$RUNS"); do
    rm -rf "$WORK/run"
    mkdir -p "$WORK/run/A" "$WORK/run/B"
    python3 - "$WORK/run/A" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.mkdir(f"{root}/d{d:02d}")
for i in range(n):
    with open(f"{root}/d{i % 100:02d}/f{i:06d}", "wb") as f:
        f.write(b"same content\n")
EOF
    ha="$WORK/run/ha" hb="$WORK/run/hb"
    ia=$("$BIN" --home "$ha" init --name a)
    ib=$("$BIN" --home "$hb" init --name b)
    pa=$(free_port)
    pb=$(free_port)
    "$BIN" --home "$ha" peer add "$ib" --addr "127.0.0.1:$pb" >/dev/null
    "$BIN" --home "$hb" peer add "$ia" --addr "127.0.0.1:$pa" >/dev/null
    "$BIN" --home "$ha" folder add "$WORK/run/A" --id dupes --share "$ib" 2>/dev/null
    "$BIN" --home "$hb" folder add "$WORK/run/B" --id dupes --share "$ia" 2>/dev/null
    t0=$(now)
    "$BIN" --home "$ha" daemon --listen "127.0.0.1:$pa" --detach
    PIDS+=("$(cat "$ha/daemon.lock")")
    "$BIN" --home "$hb" daemon --listen "127.0.0.1:$pb" --detach
    PIDS+=("$(cat "$hb/daemon.lock")")
    "$BIN" --home "$ha" sync --wait --timeout 3600 >/dev/null
    "$BIN" --home "$hb" sync --wait --timeout 3600 >/dev/null
    t1=$(now)
    n=$(find "$WORK/run/B" -path '*/.landropic' -prune -o -type f -print | wc -l)
    [ "$n" -eq "$FILES" ] || { echo "run $r: $n of $FILES files on B" >&2; exit 1; }
    find "$WORK/run/A" -mindepth 1 -maxdepth 1 -name 'd*' -exec rm -rf {} +
    t2=$(now)
    "$BIN" --home "$ha" scan >/dev/null
    "$BIN" --home "$ha" sync --wait --timeout 3600 >/dev/null
    "$BIN" --home "$hb" sync --wait --timeout 3600 >/dev/null
    t3=$(now)
    n=$(find "$WORK/run/B" -path '*/.landropic' -prune -o -type f -print | wc -l)
    [ "$n" -eq 0 ] || { echo "run $r: $n files left on B" >&2; exit 1; }
    "$BIN" --home "$ha" stop >/dev/null
    "$BIN" --home "$hb" stop >/dev/null
    PIDS=()
    c=$(echo "$t1 - $t0" | bc) d=$(echo "$t3 - $t2" | bc)
    copies+=("$c") deletes+=("$d")
    printf '  run %d  copy %8.2f s  delete %8.2f s\n' "$r" "$c" "$d"
done
printf '  median copy %.2f s, delete %.2f s\n' \
    "$(printf '%s\n' "${copies[@]}" | median)" "$(printf '%s\n' "${deletes[@]}" | median)"
