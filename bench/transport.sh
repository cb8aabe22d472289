#!/bin/sh
# transport.sh - QUIC transport throughput between two processes on loopback.
#
#   bench/transport.sh [MIB] [RUNS] [extra transport_bench flags: --no-gso --no-gro --no-host-jumbo]
#
# Generates two identities in a temp dir, runs transport_bench server + client
# RUNS times (default 5) moving MIB MiB (default 1024) client -> server, and
# prints each run and the medians. BIN selects the binary (default: the first
# of build/transport_bench, /tmp/build-*/transport_bench that exists).
set -eu

MIB=${1:-1024}
RUNS=${2:-5}
shift $(( $# > 2 ? 2 : $# ))
EXTRA="$*"

if [ -z "${BIN:-}" ]; then
    for b in build/transport_bench /tmp/build-*/transport_bench; do
        if [ -x "$b" ]; then BIN=$b; break; fi
    done
fi
[ -n "${BIN:-}" ] && [ -x "$BIN" ] || { echo "transport_bench not found; set BIN=" >&2; exit 1; }

DIR=$(mktemp -d)
SPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
mkdir "$DIR/a" "$DIR/b"
"$BIN" gen "$DIR/a"
"$BIN" gen "$DIR/b"

: > "$DIR/results"
i=1
while [ "$i" -le "$RUNS" ]; do
    rm -f "$DIR/port"
    "$BIN" server "$DIR/a" "$DIR/b" "$DIR/port" "$MIB" $EXTRA > "$DIR/server.out" &
    SPID=$!
    n=0
    while [ ! -s "$DIR/port" ] && [ "$n" -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
    timeout 120 "$BIN" client "$DIR/b" "$DIR/a" "$(cat "$DIR/port")" "$MIB" $EXTRA > "$DIR/client.out"
    wait "$SPID"
    SPID=
    c=$(cat "$DIR/client.out")
    s=$(cat "$DIR/server.out")
    echo "run $i: $c"
    echo "run $i: $s"
    # one line per run: mbps handshake_ms client_cpu server_cpu client_rss server_rss
    get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    echo "$(get "$c" mbps) $(get "$c" handshake_ms) $(get "$c" cpu_s_per_gib) $(get "$s" cpu_s_per_gib) $(get "$c" rss_anon_kib) $(get "$s" rss_anon_kib)" >> "$DIR/results"
    i=$((i + 1))
done

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
col() { awk -v k="$1" '{ print $k }' "$DIR/results" | median; }
echo "median over $RUNS runs of $MIB MiB ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  throughput        $(col 1) MB/s"
echo "  handshake         $(col 2) ms (client_new -> handshake confirmed)"
echo "  CPU s/GiB         client $(col 3), server $(col 4)"
echo "  RssAnon after     client $(col 5) KiB, server $(col 6) KiB"
