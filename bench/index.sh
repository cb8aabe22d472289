#!/bin/sh
# bench/index.sh - indexing benchmark (results: docs/benchmarks.md, "## Indexing").
#
# Usage: bench/index.sh [BUILD_DIR (default: build)] [RUNS (default: 5)]
#
# The machine is shared: run it as `nice -n -15 bench/index.sh ...` (root) so
# other load disturbs both sides less, and read the loadavg lines.
# Needs BUILD_DIR/indexbench (bench/indexbench.c), openssl, python3, /usr/bin/time.
# Measures, warm cache, in one run:
#  1. a fresh index of one 1 GiB random file vs `openssl dgst -sha256` on the
#     same file: RUNS paired runs (order alternating), median of ours/openssl
#     wall-time ratios (target <= 1.0), and the CPU seconds of each;
#  2. the rescan of an unchanged 20 000-file tree (200 dirs x 100 files,
#     0..8 KiB): median of RUNS scans, as timed inside lr_scan_folder and as
#     process wall time (target < 0.3 s);
#  3. peak RSS (/usr/bin/time %M) of a fresh index of the 1 GiB file vs a
#     100 MiB file (target: independent of file size).
set -eu

BUILD=${1:-build}
RUNS=${2:-5}
DRV=$BUILD/indexbench
[ -x "$DRV" ] || { echo "index.sh: $DRV not built" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/lr-bench-index.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM

now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

mkdir -p "$W/big/.landropic" "$W/mid/.landropic" "$W/tree/.landropic"
head -c 1073741824 /dev/urandom > "$W/big/big.bin"
head -c 104857600 /dev/urandom > "$W/mid/mid.bin"
python3 - "$W/tree" <<'EOF'
import os, random, sys
random.seed(20000)
root = sys.argv[1]
for d in range(200):
    p = os.path.join(root, "d%03d" % d)
    os.mkdir(p)
    for i in range(100):
        with open(os.path.join(p, "f%03d.dat" % i), "wb") as f:
            f.write(os.urandom(random.randint(0, 8192)))
EOF
sync
cat "$W/big/big.bin" "$W/mid/mid.bin" > /dev/null

echo "cpus=$(nproc) loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# 1. 1 GiB file vs openssl, paired. /usr/bin/time gives wall and CPU (user+sys) seconds.
timed() { /usr/bin/time -f "%e %U %S" -o "$W/t" "$@"; }
wall() { cut -d' ' -f1 "$W/t"; }
cpu() { awk '{print $2+$3}' "$W/t"; }
: > "$W/ratios"; : > "$W/ours_cpu"; : > "$W/ssl_cpu"
i=1
while [ "$i" -le "$RUNS" ]; do
    rm -f "$W/big.db" "$W/big.db-wal" "$W/big.db-shm"
    if [ $((i % 2)) -eq 1 ]; then
        timed "$DRV" "$W/big.db" "$W/big" > "$W/out"; ours=$(wall); ours_c=$(cpu)
        timed openssl dgst -sha256 "$W/big/big.bin" > /dev/null; ssl=$(wall); ssl_c=$(cpu)
    else
        timed openssl dgst -sha256 "$W/big/big.bin" > /dev/null; ssl=$(wall); ssl_c=$(cpu)
        timed "$DRV" "$W/big.db" "$W/big" > "$W/out"; ours=$(wall); ours_c=$(cpu)
    fi
    [ "$(field hashed < "$W/out")" = 1073741824 ] || { echo "index.sh: bad run: $(cat "$W/out")" >&2; exit 1; }
    ratio=$(echo "$ours $ssl" | awk '{printf "%.3f", $1/$2}')
    echo "run $i: 1GiB ours=${ours}s (cpu ${ours_c}s) openssl=${ssl}s (cpu ${ssl_c}s) ratio=$ratio"
    echo "$ratio" >> "$W/ratios"; echo "$ours_c" >> "$W/ours_cpu"; echo "$ssl_c" >> "$W/ssl_cpu"
    i=$((i + 1))
done
echo "1GiB median wall ratio ours/openssl: $(median < "$W/ratios")" \
     "(median cpu seconds: ours $(median < "$W/ours_cpu"), openssl $(median < "$W/ssl_cpu"))"

# 2. 20 000-file tree: first scan, then unchanged rescans.
"$DRV" "$W/tree.db" "$W/tree" > "$W/out"
echo "tree first scan: $(cat "$W/out")"
: > "$W/rescan"; : > "$W/rescan_wall"
i=1
while [ "$i" -le "$RUNS" ]; do
    t0=$(now); "$DRV" "$W/tree.db" "$W/tree" > "$W/out"; t1=$(now)
    [ "$(field hashed < "$W/out")" = 0 ] && [ "$(field files < "$W/out")" = 20000 ] ||
        { echo "index.sh: rescan not clean: $(cat "$W/out")" >&2; exit 1; }
    field seconds < "$W/out" >> "$W/rescan"
    echo "$t0 $t1" | awk '{print $2-$1}' >> "$W/rescan_wall"
    i=$((i + 1))
done
echo "20000-file unchanged rescan median: scan=$(median < "$W/rescan")s process=$(median < "$W/rescan_wall")s"

# 3. Peak RSS, 1 GiB vs 100 MiB (fresh index each).
rss() {
    rm -f "$W/rss.db" "$W/rss.db-wal" "$W/rss.db-shm"
    /usr/bin/time -f "%M" -o "$W/time" "$DRV" "$W/rss.db" "$1" > /dev/null
    cat "$W/time"
}
echo "peak RSS KiB: 1GiB=$(rss "$W/big") 100MiB=$(rss "$W/mid")"
echo "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
