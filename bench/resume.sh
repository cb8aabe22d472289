#!/usr/bin/env bash
# resume.sh - what resuming transfers costs (issue #7), two daemons on 127.0.0.1:
#
#   bench/resume.sh [SIZE_MIB] [RUNS]        (default: 1024 MiB, 3 runs)
#
# 1. Checkpoint cost. The receiver's transfer sessions are checkpointed to
#    the index (SQLite, WAL, synchronous=FULL) every 500 ms; what a
#    checkpoint costs is its transaction, whose price is the WAL fsync. The
#    receiver is traced with `strace -f --seccomp-bpf -T -y -e fsync,fdatasync,syncfs`
#    (only those calls stop the process) while it pulls one SIZE_MIB random
#    file, from the moment the folder is added until `sync --wait` returns;
#    the time spent in syncs of index.db-wal is summed and given per GiB and
#    as a share of the transfer time. It is an upper bound for checkpoints:
#    the few other index transactions of the run (storing the sender's
#    index, the pull round, the file's commit) are counted too.
# 2. Bytes re-sent after a SIGKILL of the receiver once the sender has sent
#    50 % of the file: the sender's `peers --json` bytes_sent for the
#    receiver (it survives the receiver's restart) when the file has landed,
#    divided by the file size.
# Not a test: run it on demand, record figures in docs/benchmarks.md.
set -euo pipefail

SIZE_MIB=${1:-1024}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LANDROPIC_BIN:-$ROOT/build/landropic}
[ -x "$BIN" ] || { echo "build first: $BIN not found" >&2; exit 1; }
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
WORK=$(mktemp -d /tmp/lr-resumebench.XXXXXX)
PIDS=()
cleanup() {
    # Only our daemons still running (a PID may have been reused since).
    for p in "${PIDS[@]}"; do
        grep -q landropic "/proc/$p/cmdline" 2>/dev/null && kill "$p" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
lr() { local h=$1; shift; "$BIN" --home "$h" "$@"; }
pid_of() { tr -d '\n' < "$1/daemon.lock"; }

# peer_bytes HOME PEER_ID FIELD: FIELD of PEER_ID in HOME's `peers --json`.
peer_bytes() {
    lr "$1" peers --json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["peers"]:
    if p["id"] == sys.argv[1]:
        print(p.get(sys.argv[2], 0)); break
else:
    print(0)' "$2" "$3"
}

start() { # start HOME PORT
    lr "$1" daemon --listen "127.0.0.1:$2" --detach
    PIDS+=("$(pid_of "$1")")
}

stop() { # stop HOME
    local pid
    pid=$(pid_of "$1")
    lr "$1" stop >/dev/null 2>&1 || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# pair RUN: homes $WORK/RUN/{a,b}, A holding big.bin in its folder; sets
# A, B, PA, PB, IDA, IDB, FA, FB.
pair() {
    local d=$WORK/$1
    A=$d/a B=$d/b FA=$d/A/data FB=$d/B/data
    mkdir -p "$FA" "$FB"
    IDA=$(lr "$A" init --name alice)
    IDB=$(lr "$B" init --name bob)
    PA=$(free_port) PB=$(free_port)
    lr "$A" peer add "$IDB" --addr "127.0.0.1:$PB" >/dev/null
    lr "$B" peer add "$IDA" --addr "127.0.0.1:$PA" >/dev/null
    cp "$WORK/big.bin" "$FA/big.bin"
    lr "$A" folder add "$FA" --id data --share "$IDB" >/dev/null 2>&1
}

wait_landed() { # wait_landed FILE SECONDS
    local deadline=$(($(date +%s) + $2))
    until [ -f "$1" ] && [ "$(stat -c %s "$1")" -eq "$SIZE" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1" >&2; exit 1; }
        sleep 0.1
    done
}

SIZE=$((SIZE_MIB << 20))
echo "generating $SIZE_MIB MiB of random data"
head -c "$SIZE" /dev/urandom > "$WORK/big.bin"
WANT=$(sha256sum < "$WORK/big.bin" | cut -d' ' -f1)

echo "== checkpoint cost: WAL syncs of the receiver's index during a $SIZE_MIB MiB pull"
for r in $(seq "$RUNS"); do
    pair "ck$r"
    start "$A" "$PA"
    start "$B" "$PB"
    strace -f --seccomp-bpf -T -y -e trace=fsync,fdatasync,syncfs -o "$WORK/ck$r.strace" \
        -p "$(pid_of "$B")" 2>/dev/null &
    TRACER=$!
    sleep 0.5 # attached
    t0=$(now)
    lr "$B" folder add "$FB" --id data --share "$IDA" >/dev/null 2>&1
    wait_landed "$FB/big.bin" 600
    lr "$B" sync --wait --timeout 120 >/dev/null
    t1=$(now)
    kill "$TRACER" 2>/dev/null || true
    wait "$TRACER" 2>/dev/null || true
    [ "$(sha256sum < "$FB/big.bin" | cut -d' ' -f1)" = "$WANT" ] || { echo "bad copy" >&2; exit 1; }
    python3 - "$WORK/ck$r.strace" "$t0" "$t1" "$SIZE" <<'PY'
import re, sys
path, t0, t1, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
n = 0
s = 0.0
other = 0.0
for line in open(path):
    m = re.search(r"(?:f|fdata|)sync(?:fs)?\((\d+)<([^>]*)>\)\s*=\s*\d+\s*<([\d.]+)>", line)
    if not m:
        continue
    if m.group(2).endswith("index.db-wal"):
        n += 1
        s += float(m.group(3))
    else:
        other += float(m.group(3))
total = t1 - t0
gib = size / (1 << 30)
print(f"run: transfer {total:.2f} s; index WAL syncs {n}, {s * 1000:.1f} ms "
      f"({s / gib * 1000:.1f} ms per GiB, {100 * s / total:.2f} % of the transfer); "
      f"other syncs (staging barrier, directories) {other * 1000:.1f} ms")
PY
    stop "$B"
    stop "$A"
done

echo "== bytes re-sent after a SIGKILL of the receiver at 50 % of $SIZE_MIB MiB"
for r in $(seq "$RUNS"); do
    pair "kill$r"
    lr "$B" folder add "$FB" --id data --share "$IDA" >/dev/null 2>&1
    start "$A" "$PA"
    start "$B" "$PB"
    deadline=$(($(date +%s) + 300))
    while :; do
        sent=$(peer_bytes "$A" "$IDB" bytes_sent)
        [ "$sent" -ge $((SIZE / 2)) ] && break
        [ "$(date +%s)" -lt "$deadline" ] || { echo "never reached 50 %" >&2; exit 1; }
        sleep 0.01
    done
    kill -9 "$(pid_of "$B")"
    staged=$(du -B1 -s "$FB/.landropic/tmp" | cut -f1)
    [ ! -e "$FB/big.bin" ] || { echo "landed before the kill: use a larger SIZE_MIB" >&2; exit 1; }
    sleep 0.5
    start "$B" "$PB"
    wait_landed "$FB/big.bin" 600
    lr "$B" sync --wait --timeout 120 >/dev/null
    [ "$(sha256sum < "$FB/big.bin" | cut -d' ' -f1)" = "$WANT" ] || { echo "bad copy" >&2; exit 1; }
    total=$(peer_bytes "$A" "$IDB" bytes_sent)
    python3 -c "import sys; s, k, st, t = map(int, sys.argv[1:]); print(f'run: killed at {k / s:.3f} of the file sent ({st / s:.3f} staged); total sent {t} = {t / s:.3f} x the file')" \
        "$SIZE" "$sent" "$staged" "$total"
    stop "$B"
    stop "$A"
done
