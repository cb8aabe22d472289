#!/usr/bin/env bash
# efficiency.sh - wire bytes, live latency and daemon memory of landropic for
# issue #5's targets, with rsync's figures for the same changes.
#
#   bench/efficiency.sh [SCENARIO...]     (default: overwrite insert rename burst latency rss)
#
# Scenarios (each starts two fresh daemons A -> B on 127.0.0.1 and lets B
# pull the initial tree before anything is measured):
#   overwrite  1 MiB overwritten inside a 1 GiB random file         (target <= 1.41 MiB)
#   insert     100 bytes inserted at the start of a 100 MiB file,
#              5 files, median                                        (target <= 110 KiB)
#   rename     a directory of 1000 files of 1-64 KiB renamed          (target <= 240 KiB)
#   burst      4 KiB overwritten in each of 200 files of 1-64 KiB:
#              last write -> every file right on B, live, no command (target <= 0.4 s)
#   latency    a small file saved (temp + rename) -> visible on B,
#              live, no command, SAMPLES samples                      (target p50 < 1 s)
#   rss        daemon VmHWM / RssAnon once a 20 000-file folder is
#              synced                                                 (target < 32 MiB)
#   rss200k    the same with 200 000 files (slow; not in the default set)
#
# Bytes: "payload" is the sum of `landropic peers --json` bytes_sent +
# bytes_received on A (B's counters are printed as a cross-check), with the
# INDEX part of it (peers --json "index"; 0 with older binaries): protocol
# message payloads, no QUIC/UDP/IP overhead. "lo" is the bytes that crossed
# the loopback interface (tx_bytes of lo in /proc/net/dev) in the same window:
# UDP, QUIC headers, ACKs and all. It is exact because, when run as root, the
# script re-executes itself in a private network namespace (unshare --net)
# where only its own daemons and rsync talk; otherwise lo is shared with the
# machine and not reported. rsync: an rsync daemon on 127.0.0.1 serves A's
# folder, the client updates a copy of the old tree with `-a --delete
# --stats`; figures are its "Total bytes sent" + "Total bytes received"
# (payload, as rsync counts it) and lo bytes (TCP/IP included).
#
# In sync: for byte scenarios, `sync --wait` on A (returns once B has applied
# and announced every version), a content check of B, then the counters must
# stay unchanged for 2 s (B's re-announcement counts too). For time
# scenarios, a Python poller compares B's files with what was written every
# 5 ms; no sync command is sent.
#
# Environment: LANDROPIC_BIN (default build/landropic), RUNS (timed repeats
# of burst, default 5), SAMPLES (latency samples, default 20), KEEP=1 keeps
# the work directory. Syncthing: the script only reports whether it is
# installed (it has no Syncthing driver yet and never installs anything).
# Overwrite and rename also print a summary of both daemons' events in the
# measured window, and burst one extra traced run (not in the median): the
# timeline after the last write. Not a test: run on demand, record the
# figures in docs/benchmarks.md.
set -euo pipefail

SELF=$(readlink -f "$0")
if [ -z "${LR_EFF_NETNS:-}" ] && [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
    export LR_EFF_NETNS=1
    exec unshare --net -- bash -c 'ip link set lo up && exec bash "$0" "$@"' "$SELF" "$@"
fi

ROOT=$(cd "$(dirname "$SELF")/.." && pwd)
BIN=${LANDROPIC_BIN:-$ROOT/build/landropic}
[ -x "$BIN" ] || { echo "build first: $BIN not found" >&2; exit 1; }
BIN=$(readlink -f "$BIN")
RUNS=${RUNS:-5}
SAMPLES=${SAMPLES:-20}
SCENARIOS=${*:-overwrite insert rename burst latency rss}
WORK=$(mktemp -d /tmp/lr-effbench.XXXXXX)
PIDS=()
HA="$WORK/ha"
HB="$WORK/hb"

stop_pid() { # PID: SIGTERM, wait up to 10 s, then SIGKILL
    local p=$1
    kill "$p" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
forget() { # PID: stop it and drop it from PIDS (so a reused PID is never signalled later)
    local p=$1 q keep=()
    stop_pid "$p"
    for q in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
kib() { awk -v b="$1" 'BEGIN {printf "%.1f KiB", b / 1024}'; }
lo_bytes() {
    if [ -n "${LR_EFF_NETNS:-}" ]; then
        sed 's/:/ /' /proc/net/dev | awk '$1 == "lo" {print $10}'
    else
        echo 0
    fi
}

# Helpers in Python: file generation and edits, live pollers.
PY="$WORK/h.py"
cat > "$PY" <<'PY'
import os, random, sys, time, json

def gen(d, n, lo, hi, per_dir, seed):
    r = random.Random(seed)
    for i in range(n):
        sub = os.path.join(d, f"d{i // per_dir:04d}") if per_dir else d
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:06d}.dat"), "wb") as f:
            f.write(r.randbytes(r.randint(lo, hi)))

def overwrite(path, off, n):
    with open(path, "r+b") as f:
        f.seek(off); f.write(os.urandom(n))

def insert(path, n):
    with open(path, "r+b") as f:
        data = f.read(); f.seek(0); f.write(os.urandom(n) + data)

def files_of(d):
    out = []
    for dp, dn, fn in os.walk(d):
        dn.sort()
        out += [os.path.join(dp, x) for x in sorted(fn)]
    return out

def poll_until(expect, deadline):
    """expect: {path_on_B: (bytes, mtime_ns on A)}. Returns the time all
    matched, or None. The daemon copies A's mtime, so a file is read only
    once its stat matches (every 20th round reads all, in case it does not):
    a poller reading 6 MB every 5 ms would take a core from the daemons."""
    left = dict(expect)
    rounds = 0
    while left and time.time() < deadline:
        rounds += 1
        for p in list(left):
            data, mt = left[p]
            try:
                st = os.stat(p)
                if rounds % 20 and (st.st_size != len(data) or st.st_mtime_ns != mt):
                    continue
                with open(p, "rb") as f:
                    if f.read() == data:
                        del left[p]
            except OSError:
                pass
        if left:
            time.sleep(0.005)
    return time.time() if not left else None

def expect_of(src_path, dst_path):
    with open(src_path, "rb") as f:
        return dst_path, (f.read(), os.fstat(f.fileno()).st_mtime_ns)

def burst(src, dst, seed):
    r = random.Random(seed)
    paths = files_of(src)
    expect = {}
    for p in paths:
        with open(p, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            n = min(4096, size)
            off = r.randint(0, size - n)
            f.seek(off); f.write(os.urandom(n))
    t_last = time.time()
    for p in paths:
        k, v = expect_of(p, os.path.join(dst, os.path.relpath(p, src)))
        expect[k] = v
    t = poll_until(expect, t_last + 60)
    print(f"{t - t_last:.4f} {t_last:.6f}" if t else f"timeout {t_last:.6f}")

def latency(src, dst, samples, gap):
    out = []
    for i in range(samples):
        body = (f"sample {i} {time.time()} ".encode() + os.urandom(8).hex().encode()) * 40
        tmp = os.path.join(src, ".note.txt.tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.rename(tmp, os.path.join(src, "note.txt"))
        t0 = time.time()
        k, v = expect_of(os.path.join(src, "note.txt"), os.path.join(dst, "note.txt"))
        t = poll_until({k: v}, t0 + 30)
        out.append(t - t0 if t else float("inf"))
        time.sleep(gap)
    print(" ".join(f"{x:.4f}" for x in out))

def timeline(ev_a, ev_b, t0):
    """First/last time (ms after t0) and count of each event type per side."""
    from datetime import datetime, timezone
    rows = {}
    for side, path in (("A", ev_a), ("B", ev_b)):
        for line in open(path):
            try:
                e = json.loads(line)
                t = datetime.strptime(e["time"].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
            except (ValueError, KeyError):
                continue
            if t < t0 - 0.005:
                continue
            kind = e["type"] + "".join(f" {e[k]}" for k in ("direction", "state", "action") if k in e)
            r = rows.setdefault((side, kind), [t, t, 0])
            r[0] = min(r[0], t); r[1] = max(r[1], t); r[2] += 1
    for (side, kind), (a, b, n) in sorted(rows.items(), key=lambda x: x[1][0]):
        print(f"    {side} {kind:32s} first {1000 * (a - t0):7.0f} ms  last {1000 * (b - t0):7.0f} ms  x{n}")

def peer_bytes(doc):
    p = json.load(open(doc))["peers"]
    ix = p[0].get("index", {}) if p else {}
    print(p[0]["bytes_sent"] if p else 0, p[0]["bytes_received"] if p else 0,
          ix.get("bytes_sent", 0), ix.get("bytes_received", 0))

cmd = sys.argv[1]
a = sys.argv[2:]
if cmd == "gen": gen(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]))
elif cmd == "overwrite": overwrite(a[0], int(a[1]), int(a[2]))
elif cmd == "insert": insert(a[0], int(a[1]))
elif cmd == "burst": burst(a[0], a[1], int(a[2]))
elif cmd == "latency": latency(a[0], a[1], int(a[2]), float(a[3]))
elif cmd == "peer_bytes": peer_bytes(a[0])
elif cmd == "timeline": timeline(a[0], a[1], float(a[2]))
PY
h() { python3 "$PY" "$@"; }

peer_bytes() { # HOME -> "sent received index_sent index_received"
    "$BIN" --home "$1" peers --json > "$WORK/peers.json"
    h peer_bytes "$WORK/peers.json"
}

# lr_up SRC DST: fresh homes, two daemons, B pulls SRC into DST; returns in sync.
lr_up() {
    rm -rf "$HA" "$HB"
    local ia ib pa pb
    ia=$("$BIN" --home "$HA" init --name src)
    ib=$("$BIN" --home "$HB" init --name dst)
    pa=$(free_port)
    pb=$(free_port)
    "$BIN" --home "$HA" peer add "$ib" --addr "127.0.0.1:$pb" >/dev/null
    "$BIN" --home "$HB" peer add "$ia" --addr "127.0.0.1:$pa" >/dev/null
    "$BIN" --home "$HA" folder add "$1" --id bench --share "$ib" 2>/dev/null
    "$BIN" --home "$HB" folder add "$2" --id bench --share "$ia" 2>/dev/null
    "$BIN" --home "$HA" daemon --listen "127.0.0.1:$pa" --detach --no-discovery
    PIDA=$(cat "$HA/daemon.lock")
    PIDS+=("$PIDA")
    "$BIN" --home "$HB" daemon --listen "127.0.0.1:$pb" --detach --no-discovery
    PIDB=$(cat "$HB/daemon.lock")
    PIDS+=("$PIDB")
    "$BIN" --home "$HA" sync --wait --timeout 3600 >/dev/null
    "$BIN" --home "$HB" sync --wait --timeout 3600 >/dev/null
    settle
}
lr_down() {
    forget "$PIDA"
    forget "$PIDB"
}

# Wait until A's counters have not moved for 2 s (at most 60 s).
settle() {
    local prev cur same=0
    prev=$(peer_bytes "$HA")
    for _ in $(seq 120); do
        sleep 0.5
        cur=$(peer_bytes "$HA")
        if [ "$cur" = "$prev" ]; then
            same=$((same + 1))
            [ "$same" -ge 4 ] && return 0
        else
            same=0
        fi
        prev=$cur
    done
    echo "warning: counters still moving after 60 s" >&2
}

# lr_measure CHECK_CMD...: after a change on A, sync, check, settle; sets
# LR_PAYLOAD, LR_LO, LR_AB, LR_BA, LR_B (B's sent+received), LR_IAB/LR_IBA
# (the INDEX payload bytes within LR_AB/LR_BA, from peers --json "index").
# With LR_TRACE=1, the daemons' events in the window are summarised (which
# messages, how many times) to explain the bytes.
lr_measure_begin() {
    if [ "${LR_TRACE:-0}" = 1 ]; then
        "$BIN" --home "$HA" events --json > "$WORK/mev-a" &
        M_EA=$!
        PIDS+=("$M_EA")
        "$BIN" --home "$HB" events --json > "$WORK/mev-b" &
        M_EB=$!
        PIDS+=("$M_EB")
        sleep 0.5
        M_T0=$(now)
    fi
    read -r M_AS M_AR M_AIS M_AIR < <(peer_bytes "$HA")
    read -r M_BS M_BR _ _ < <(peer_bytes "$HB")
    M_LO=$(lo_bytes)
}
lr_measure_end() {
    "$BIN" --home "$HA" sync --wait --timeout 3600 >/dev/null
    "$@" || { echo "landropic: B differs after the change" >&2; exit 1; }
    settle
    local as ar ais air bs br lo
    read -r as ar ais air < <(peer_bytes "$HA")
    read -r bs br _ _ < <(peer_bytes "$HB")
    lo=$(lo_bytes)
    LR_AB=$((as - M_AS))
    LR_BA=$((ar - M_AR))
    LR_IAB=$((ais - M_AIS))
    LR_IBA=$((air - M_AIR))
    LR_PAYLOAD=$((LR_AB + LR_BA))
    LR_B=$((bs - M_BS + br - M_BR))
    LR_LO=$((lo - M_LO))
    if [ "${LR_TRACE:-0}" = 1 ]; then
        forget "$M_EA"
        forget "$M_EB"
        echo "  events in the window (ms after the change):"
        h timeline "$WORK/mev-a" "$WORK/mev-b" "$M_T0"
    fi
}

# rsync daemon serving SRC; rs_pull DST runs one update and sets RS_PAYLOAD, RS_LO, RS_SECS.
rs_up() {
    RS_PORT=$(free_tcp)
    printf 'use chroot = no\n[src]\npath = %s\nread only = yes\nexclude = .landropic/\n' "$1" > "$WORK/rsyncd.conf"
    rsync --daemon --no-detach --address=127.0.0.1 --port="$RS_PORT" --config="$WORK/rsyncd.conf" &
    RS_PID=$!
    PIDS+=("$RS_PID")
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/"$RS_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "rsync daemon did not start" >&2
    exit 1
}
rs_pull() {
    local lo0 t0 t1 out
    lo0=$(lo_bytes)
    t0=$(now)
    out=$(rsync -a --delete --stats --exclude=.landropic/ "rsync://127.0.0.1:$RS_PORT/src/" "$1/")
    t1=$(now)
    RS_SECS=$(echo "$t1 - $t0" | bc | awk '{printf "%.3f", $1}')
    RS_LO=$(($(lo_bytes) - lo0))
    RS_PAYLOAD=$(echo "$out" | awk -F: '/^Total bytes (sent|received)/ {gsub(/[ ,]/, "", $2); s += $2} END {print s}')
}
rs_down() { forget "$RS_PID"; }

row() { # LABEL PAYLOAD LO
    if [ -n "${LR_EFF_NETNS:-}" ]; then
        printf '  %-34s payload %12d B (%s)  lo %12d B (%s)\n' "$1" "$2" "$(kib "$2")" "$3" "$(kib "$3")"
    else
        printf '  %-34s payload %12d B (%s)  lo n/a\n' "$1" "$2" "$(kib "$2")"
    fi
}

scen_overwrite() {
    local s="$WORK/s" d="$WORK/d" r="$WORK/r"
    mkdir -p "$s" "$d"
    head -c $((1 << 30)) /dev/urandom > "$s/big.bin"
    cp -a "$s" "$r"
    lr_up "$s" "$d"
    rs_up "$s"
    rs_pull "$r" # a no-op pull: the copy is already equal
    local off=$((537 * 1000 * 1000 + 12345))
    echo "== overwrite: 1 MiB at offset $off of a 1 GiB file (target <= 1.41 MiB = 1478492 B)"
    LR_TRACE=1 lr_measure_begin
    h overwrite "$s/big.bin" "$off" $((1 << 20))
    LR_TRACE=1 lr_measure_end cmp -s "$s/big.bin" "$d/big.bin"
    row "landropic A->B / B->A $LR_AB / $LR_BA" "$LR_PAYLOAD" "$LR_LO"
    echo "  (B's counters: $LR_B B; INDEX payload A->B / B->A: $LR_IAB / $LR_IBA B)"
    rs_pull "$r"
    cmp -s "$s/big.bin" "$r/big.bin" || { echo "rsync copy differs" >&2; exit 1; }
    row "rsync (${RS_SECS} s)" "$RS_PAYLOAD" "$RS_LO"
    rs_down
    lr_down
    rm -rf "$s" "$d" "$r"
}

scen_insert() {
    local s="$WORK/s" d="$WORK/d" r="$WORK/r" i lp=() ll=() rp=() rl=()
    mkdir -p "$s" "$d"
    for i in 1 2 3 4 5; do head -c $((100 << 20)) /dev/urandom > "$s/f$i.bin"; done
    cp -a "$s" "$r"
    lr_up "$s" "$d"
    rs_up "$s"
    echo "== insert: 100 bytes at the start of a 100 MiB random file, 5 files (target <= 110 KiB = 112640 B)"
    for i in 1 2 3 4 5; do
        lr_measure_begin
        h insert "$s/f$i.bin" 100
        lr_measure_end cmp -s "$s/f$i.bin" "$d/f$i.bin"
        row "file $i landropic" "$LR_PAYLOAD" "$LR_LO"
        echo "    (INDEX payload A->B / B->A: $LR_IAB / $LR_IBA B)"
        rs_pull "$r"
        row "file $i rsync" "$RS_PAYLOAD" "$RS_LO"
        lp+=("$LR_PAYLOAD"); ll+=("$LR_LO"); rp+=("$RS_PAYLOAD"); rl+=("$RS_LO")
    done
    row "median landropic" "$(printf '%s\n' "${lp[@]}" | median)" "$(printf '%s\n' "${ll[@]}" | median)"
    row "median rsync" "$(printf '%s\n' "${rp[@]}" | median)" "$(printf '%s\n' "${rl[@]}" | median)"
    rs_down
    lr_down
    rm -rf "$s" "$d" "$r"
}

scen_rename() {
    local s="$WORK/s" d="$WORK/d" r="$WORK/r"
    mkdir -p "$s/dir0" "$d"
    h gen "$s/dir0" 1000 1024 65536 0 31
    cp -a "$s" "$r"
    lr_up "$s" "$d"
    rs_up "$s"
    echo "== rename: a directory of 1000 files of 1-64 KiB ($(du -sh "$s/dir0" | cut -f1)) (target <= 240 KiB = 245760 B)"
    LR_TRACE=1 lr_measure_begin
    mv "$s/dir0" "$s/dir1"
    LR_TRACE=1 lr_measure_end diff -r -q "$s/dir1" "$d/dir1"
    [ ! -e "$d/dir0" ] || { echo "landropic: old directory still on B" >&2; exit 1; }
    row "landropic A->B / B->A $LR_AB / $LR_BA" "$LR_PAYLOAD" "$LR_LO"
    echo "  (INDEX payload A->B / B->A: $LR_IAB / $LR_IBA B)"
    rs_pull "$r"
    row "rsync --delete (${RS_SECS} s)" "$RS_PAYLOAD" "$RS_LO"
    rs_down
    lr_down
    rm -rf "$s" "$d" "$r"
}

scen_burst() {
    local s="$WORK/s" d="$WORK/d" r="$WORK/r" i t lt=() rt=() lp=() rp=()
    mkdir -p "$s/burst" "$d"
    h gen "$s/burst" 200 1024 65536 0 41
    cp -a "$s" "$r"
    lr_up "$s" "$d"
    rs_up "$s"
    echo "== burst: 4 KiB overwritten in each of 200 files of 1-64 KiB, last write -> in sync on B, live (target <= 0.4 s); $RUNS runs"
    for i in $(seq "$RUNS"); do
        lr_measure_begin
        read -r t tl < <(h burst "$s/burst" "$d/burst" "$i")
        [ "$t" != timeout ] || { echo "burst: B not in sync after 60 s" >&2; exit 1; }
        lr_measure_end diff -r -q "$s/burst" "$d/burst"
        rs_pull "$r"
        printf '  run %d  landropic %7.3f s  payload %s  |  rsync (started after) %6.3f s  payload %s\n' \
            "$i" "$t" "$(kib "$LR_PAYLOAD")" "$RS_SECS" "$(kib "$RS_PAYLOAD")"
        lt+=("$t"); rt+=("$RS_SECS"); lp+=("$LR_PAYLOAD"); rp+=("$RS_PAYLOAD")
    done
    printf '  median   landropic %7.3f s  payload %s  |  rsync %6.3f s  payload %s\n' \
        "$(printf '%s\n' "${lt[@]}" | median)" "$(kib "$(printf '%s\n' "${lp[@]}" | median)")" \
        "$(printf '%s\n' "${rt[@]}" | median)" "$(kib "$(printf '%s\n' "${rp[@]}" | median)")"
    # One more run with event streams open (item events cost the daemons a
    # little, so it is not in the median): where the time goes.
    local ea eb
    "$BIN" --home "$HA" events --json > "$WORK/ev-a" &
    ea=$!
    PIDS+=("$ea")
    "$BIN" --home "$HB" events --json > "$WORK/ev-b" &
    eb=$!
    PIDS+=("$eb")
    sleep 1
    read -r t tl < <(h burst "$s/burst" "$d/burst" 99)
    sleep 1
    forget "$ea"
    forget "$eb"
    echo "  traced run: $t s; events after the last write (the daemons' clock, ms resolution):"
    h timeline "$WORK/ev-a" "$WORK/ev-b" "$tl"
    rs_down
    lr_down
    rm -rf "$s" "$d" "$r"
}

scen_latency() {
    local s="$WORK/s" d="$WORK/d" out
    mkdir -p "$s" "$d"
    echo "seed" > "$s/note.txt"
    lr_up "$s" "$d"
    echo "== latency: a ~1 KiB file saved (temp + rename) -> same content on B, live; $SAMPLES samples 1 s apart (target p50 < 1 s)"
    out=$(h latency "$s" "$d" "$SAMPLES" 1.0)
    echo "  samples (s): $out"
    echo "$out" | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {
        printf "  p50 %.3f s  p90 %.3f s  min %.3f s  max %.3f s\n", a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[1], a[NR]}'
    lr_down
    rm -rf "$s" "$d"
}

status_kib() { # PID FIELD
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
rss_print() { # WHEN
    local p WHEN=$1
    for p in "A $PIDA" "B $PIDB"; do
        set -- $p
        printf '  %-9s daemon %s  VmHWM %6d KiB  VmRSS %6d KiB  RssAnon %6d KiB\n' "$WHEN" "$1" \
            "$(status_kib "$2" VmHWM)" "$(status_kib "$2" VmRSS)" "$(status_kib "$2" RssAnon)"
    done
}
scen_rss_n() { # FILES
    local n=$1 s="$WORK/s" d="$WORK/d" t0 t1 p
    mkdir -p "$s" "$d"
    h gen "$s" "$n" 256 4096 100 51
    echo "== rss: $n files of 256 B-4 KiB in $((n / 100)) directories ($(du -sh "$s" | cut -f1)) (target < 32 MiB at 20 000)"
    t0=$(now)
    lr_up "$s" "$d"
    t1=$(now)
    diff -r -q --exclude=.landropic "$s" "$d" >/dev/null || { echo "rss: trees differ" >&2; exit 1; }
    printf '  initial sync (index + pull + settle 2 s): %.1f s\n' "$(echo "$t1 - $t0" | bc)"
    rss_print "in sync"
    sleep 10
    rss_print "10 s idle"
    lr_down
    rm -rf "$s" "$d"
}

echo "efficiency.sh: $(date -u '+%F %T') UTC; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$(rsync --version | head -1); netns: ${LR_EFF_NETNS:-no (lo bytes not measured)}"
echo "binary: $BIN ($("$BIN" --version 2>/dev/null || echo '?'))"
if command -v syncthing >/dev/null; then
    echo "syncthing: installed at $(command -v syncthing), but no driver in this script yet (not compared)"
else
    echo "syncthing: not installed (not compared; this script never installs it)"
fi
for sc in $SCENARIOS; do
    case $sc in
    overwrite) scen_overwrite ;;
    insert) scen_insert ;;
    rename) scen_rename ;;
    burst) scen_burst ;;
    latency) scen_latency ;;
    rss) scen_rss_n 20000 ;;
    rss200k) scen_rss_n 200000 ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
    esac
    echo "  (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
