#!/usr/bin/env bash
# first_scan_wait.sh - what `sync --wait` on a receiver started together with
# the sender waits for: both daemons start on 127.0.0.1 (fresh homes, cold
# page cache), then only the receiver runs `sync --wait`; prints how long it
# took and how many of the sender's files the receiver had when it returned.
#
#   bench/first_scan_wait.sh SOURCE_DIR [RUNS]     (LANDROPIC_BIN: the binary)
#
# A source whose first scan takes a while (one 1 GiB file) shows whether the
# receiver waits for that scan (docs/protocol.md §6.5, option 5) or returns
# on the empty index exchanged before it. Not a test: run it on demand.
set -euo pipefail
SRC=$(cd "${1:?usage: first_scan_wait.sh SOURCE_DIR [RUNS]}" && pwd)
RUNS=${2:-3}
BIN=${LANDROPIC_BIN:-$(dirname "$0")/../build/landropic}
WORK=$(mktemp -d)
cleanup() {
    local h
    for h in A B; do
        if [ -S "$WORK/$h/control.sock" ]; then "$BIN" --home "$WORK/$h" stop >/dev/null 2>&1 || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
L() { "$BIN" --home "$WORK/$1" "${@:2}"; }
want=$(find "$SRC" -path '*/.landropic' -prune -o -type f -print | wc -l)
for run in $(seq "$RUNS"); do
    rm -rf "$WORK/A" "$WORK/B" "$WORK/dst"
    mkdir -p "$WORK/dst"
    L A init --name src >/dev/null
    L B init --name dst >/dev/null
    pa=$(free_port) pb=$(free_port)
    L A peer add "$(L B id)" --addr "127.0.0.1:$pb" >/dev/null
    L B peer add "$(L A id)" --addr "127.0.0.1:$pa" >/dev/null
    rm -rf "$SRC/.landropic"
    L A folder add "$SRC" --id f --share "$(L B id)" >/dev/null 2>&1
    L B folder add "$WORK/dst" --id f --share "$(L A id)" >/dev/null 2>&1
    sync
    if [ "$(id -u)" -eq 0 ]; then echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; fi
    t0=$(date +%s.%N)
    L A daemon --listen "127.0.0.1:$pa" --detach --log "$WORK/A/log"
    L B daemon --listen "127.0.0.1:$pb" --detach --log "$WORK/B/log"
    rc=0
    L B sync f --wait --timeout 300 >/dev/null || rc=$?
    t1=$(date +%s.%N)
    got=$(find "$WORK/dst" -path '*/.landropic' -prune -o -type f -print | wc -l)
    printf 'run %d: %.2f s, exit %d, receiver had %d of %d files\n' "$run" \
        "$(echo "$t1 - $t0" | bc)" "$rc" "$got" "$want"
    L A stop >/dev/null
    L B stop >/dev/null
done
