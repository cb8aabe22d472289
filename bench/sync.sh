#!/usr/bin/env bash
# sync.sh - landropic vs rsync (network mode, with and without --fsync) vs cp -a,
# from "source has the data, destination is empty" to "destination in sync".
#
#   bench/sync.sh [RUNS] [WORKLOADS...]      (default: 3 runs of big small mixed)
#
# Workloads: big   = one 1 GiB random file
#            small = 20 000 files of 16-48 KiB (about 640 MiB) in 200 directories
#            mixed = about 500 MiB: 40 files of 1-16 MiB, 2 000 of 4-64 KiB, text
#            tiny  = 50 files (a smoke test of the script itself)
# Every run starts from a cold page cache (sync + drop_caches when root) and a
# fresh destination. landropic: two daemons on 127.0.0.1, timed from starting
# them (the source indexes its folder first) until `sync --wait` on the
# destination returns and the trees compare equal. rsync: an rsync daemon on
# 127.0.0.1 serving the source, the client pulling into the destination.
# Prints per-run seconds and the medians, and the ratios to rsync --fsync
# (the same durability as landropic) measured in the same run.
# When installed (bench-only tools: apt-get install syncthing unison; never
# needed by make test or make demo), the same run also times:
#   syncthing  two Syncthing instances on 127.0.0.1 driven by bench/syncthing.py
#              (fresh homes, static addresses, discovery/relays/NAT off, folder
#              watcher on), timed from starting both until B's REST status has
#              every file of the source in sync; Syncthing fsyncs every file
#   unison     a Unison server (-socket on 127.0.0.1) and the client syncing the
#              source into it (-batch -auto -times), timed from starting the
#              client until it exits; Unison has no fsync option
# and prints their medians and landropic / syncthing, landropic / unison on an
# extra line after the existing ones. SYNCTHING=0 or UNISON=0 skips them.
# Not a test: run it on demand, record figures in docs/benchmarks.md.
set -euo pipefail

RUNS=${1:-3}
shift || true
WORKLOADS=${*:-big small mixed}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LANDROPIC_BIN:-$ROOT/build/landropic}
[ -x "$BIN" ] || { echo "build first: $BIN not found" >&2; exit 1; }
WORK=$(mktemp -d /tmp/lr-syncbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
cold() {
    sync
    if [ "$(id -u)" -eq 0 ]; then echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; fi
}

gen() { # gen WORKLOAD DIR
    local w=$1 d=$2
    mkdir -p "$d"
    case $w in
    tiny) for i in $(seq 50); do head -c $((i * 1000)) /dev/urandom > "$d/t$i"; done ;;
    big) head -c $((1 << 30)) /dev/urandom > "$d/big.bin" ;;
    small)
        python3 - "$d" <<'PY'
import os, random, sys
d = sys.argv[1]; r = random.Random(7)
for i in range(200):
    sub = os.path.join(d, f"dir{i:03d}"); os.makedirs(sub, exist_ok=True)
    for k in range(100):
        with open(os.path.join(sub, f"f{k:03d}.dat"), "wb") as f:
            f.write(os.urandom(r.randint(16 << 10, 48 << 10)))
PY
        ;;
    mixed)
        python3 - "$d" <<'PY'
import os, random, sys
d = sys.argv[1]; r = random.Random(11)
for i in range(40):
    with open(os.path.join(d, f"media{i:02d}.bin"), "wb") as f:
        f.write(os.urandom(r.randint(1 << 20, 16 << 20)))
words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ".split()
for i in range(2000):
    sub = os.path.join(d, f"src{i % 50:02d}"); os.makedirs(sub, exist_ok=True)
    n = r.randint(4 << 10, 64 << 10)
    with open(os.path.join(sub, f"file{i:04d}.txt"), "wb") as f:
        if i % 2:
            f.write(os.urandom(n))
        else:
            out = bytearray()
            while len(out) < n:
                out += r.choice(words) + b" "
            f.write(bytes(out[:n]))
PY
        ;;
    esac
}

same_tree() { diff -r -q --exclude=.landropic --exclude=.stfolder "$1" "$2" >/dev/null; }

run_cp() { # SRC DST
    cold
    local t0; t0=$(now)
    cp -a "$1/." "$2/"
    sync
    echo "$(now) - $t0" | bc
}

run_rsync() { # SRC DST FSYNC(0|1)
    local port conf pid t0 extra=""
    port=$(free_tcp)
    conf="$WORK/rsyncd.conf"
    printf 'use chroot = no\n[src]\npath = %s\nread only = yes\n' "$1" > "$conf"
    rsync --daemon --no-detach --address=127.0.0.1 --port="$port" --config="$conf" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    [ "$3" = 1 ] && extra="--fsync"
    cold
    t0=$(now)
    rsync -a $extra "rsync://127.0.0.1:$port/src/" "$2/"
    local t1; t1=$(now)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$t1 - $t0" | bc
}

run_landropic() { # SRC DST
    local ha="$WORK/ha" hb="$WORK/hb" pa pb ia ib t0 t1
    rm -rf "$ha" "$hb"
    ia=$("$BIN" --home "$ha" init --name src)
    ib=$("$BIN" --home "$hb" init --name dst)
    pa=$(free_port)
    pb=$(free_port)
    "$BIN" --home "$ha" peer add "$ib" --addr "127.0.0.1:$pb" >/dev/null
    "$BIN" --home "$hb" peer add "$ia" --addr "127.0.0.1:$pa" >/dev/null
    "$BIN" --home "$ha" folder add "$1" --id bench --share "$ib" 2>/dev/null
    "$BIN" --home "$hb" folder add "$2" --id bench --share "$ia" 2>/dev/null
    cold
    t0=$(now)
    "$BIN" --home "$ha" daemon --listen "127.0.0.1:$pa" --detach
    PIDS+=("$(cat "$ha/daemon.lock")")
    "$BIN" --home "$hb" daemon --listen "127.0.0.1:$pb" --detach
    PIDS+=("$(cat "$hb/daemon.lock")")
    "$BIN" --home "$ha" sync --wait --timeout 3600 >/dev/null
    "$BIN" --home "$hb" sync --wait --timeout 3600 >/dev/null
    t1=$(now)
    "$BIN" --home "$ha" stop >/dev/null
    "$BIN" --home "$hb" stop >/dev/null
    rm -rf "$1/.landropic"
    echo "$t1 - $t0" | bc
}

run_syncthing() { # SRC DST
    python3 "$ROOT/bench/syncthing.py" initial "$1" "$2" --cold
}

run_unison() { # SRC DST
    local port pid t0 t1
    rm -rf "$WORK/unison-c" "$WORK/unison-s"
    mkdir -p "$WORK/unison-c" "$WORK/unison-s"
    port=$(free_tcp)
    UNISON="$WORK/unison-s" unison -socket "$port" -listen 127.0.0.1 >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    cold
    t0=$(now)
    UNISON="$WORK/unison-c" unison "$1" "socket://127.0.0.1:$port/$2" -batch -auto -times \
        -ui text -silent >/dev/null 2>&1
    t1=$(now)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$t1 - $t0" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "sync.sh: $RUNS runs; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); $(rsync --version | head -1)"
EXTRA=""
if [ "${SYNCTHING:-1}" != 0 ] && command -v syncthing >/dev/null; then
    EXTRA="$EXTRA syncthing"
    echo "also: $(syncthing --version | cut -d' ' -f1-2) (bench/syncthing.py)"
fi
if [ "${UNISON:-1}" != 0 ] && command -v unison >/dev/null; then
    EXTRA="$EXTRA unison"
    echo "also: $(unison -version) (socket mode on 127.0.0.1)"
fi
echo "date: $(date -u '+%F %T') UTC"
for w in $WORKLOADS; do
    src="$WORK/src-$w"
    gen "$w" "$src"
    echo "== $w: $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files"
    declare -A res=()
    for r in $(seq "$RUNS"); do
        for tool in cp rsync-fsync rsync landropic $EXTRA; do
            dst="$WORK/dst"
            rm -rf "$dst"
            mkdir -p "$dst"
            case $tool in
            cp) s=$(run_cp "$src" "$dst") ;;
            rsync-fsync) s=$(run_rsync "$src" "$dst" 1) ;;
            rsync) s=$(run_rsync "$src" "$dst" 0) ;;
            landropic) s=$(run_landropic "$src" "$dst") ;;
            syncthing) s=$(run_syncthing "$src" "$dst") ;;
            unison) s=$(run_unison "$src" "$dst") ;;
            esac
            same_tree "$src" "$dst" || { echo "$tool: trees differ after run $r" >&2; exit 1; }
            res[$tool]="${res[$tool]:-} $s"
            printf '  run %d %-12s %8.2f s\n' "$r" "$tool" "$s"
        done
    done
    for tool in cp rsync-fsync rsync landropic; do
        m=$(echo "${res[$tool]}" | tr ' ' '\n' | grep . | median)
        printf '  median %-12s %8.2f s\n' "$tool" "$m"
        eval "med_${tool//-/_}=$m"
    done
    printf '  landropic / rsync --fsync = %.2f; landropic / rsync = %.2f\n' \
        "$(echo "$med_landropic / $med_rsync_fsync" | bc -l)" "$(echo "$med_landropic / $med_rsync" | bc -l)"
    for tool in $EXTRA; do
        m=$(echo "${res[$tool]}" | tr ' ' '\n' | grep . | median)
        printf '  median %-12s %8.2f s\n' "$tool" "$m"
        printf '  landropic / %s = %.2f\n' "$tool" "$(echo "$med_landropic / $m" | bc -l)"
    done
    echo "  (load $(cut -d' ' -f1-3 /proc/loadavg))"
    unset res
    rm -rf "$src"
done
