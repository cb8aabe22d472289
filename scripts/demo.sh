#!/usr/bin/env bash
# make demo: two devices on this machine, each with its own home, show what
# landropic does today. Everything lives in one temporary directory, printed
# at the end; both daemons are stopped by PID before it exits.
set -euo pipefail

BIN=${1:-build/landropic}
BIN=$(readlink -f "$BIN")
DEMO=$(mktemp -d /tmp/landropic-demo.XXXXXX)
A="$DEMO/alice-home" B="$DEMO/bob-home"
FA="$DEMO/alice-docs" FB="$DEMO/bob-docs"
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ landropic %s\n' "$*"; "$BIN" "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Two devices, alice and bob, each with its own home"
ID_A=$("$BIN" --home "$A" init --name alice)
ID_B=$("$BIN" --home "$B" init --name bob)
echo "alice: $ID_A"
echo "bob:   $ID_B"

say "alice shares a folder with bob"
mkdir -p "$FA/notes" "$FB"
echo "Shopping: milk, eggs" > "$FA/notes/todo.txt"
head -c 3000000 /dev/urandom > "$FA/photo.raw"
ln -s notes/todo.txt "$FA/todo-link"
run --home "$A" peer add "$ID_B" --name bob
run --home "$A" folder add "$FA" --id docs --share "$ID_B"
run --home "$B" peer add "$ID_A" --name alice
run --home "$B" folder add "$FB" --id docs --share "$ID_A"
run --home "$A" folders

say "alice indexes the folder (FastCDC chunks, SHA-256, SQLite)"
run --home "$A" scan --json
echo "hello again" >> "$FA/notes/todo.txt"
run --home "$A" scan

say "Both daemons start on loopback and connect over QUIC with pinned mutual TLS"
PA=$(free_port) PB=$(free_port)
run --home "$A" peer add "$ID_B" --addr "127.0.0.1:$PB"
run --home "$B" peer add "$ID_A" --addr "127.0.0.1:$PA"
run --home "$A" daemon --listen "127.0.0.1:$PA" --detach
pids+=("$(cat "$A/daemon.lock")")
run --home "$B" daemon --listen "127.0.0.1:$PB" --detach
pids+=("$(cat "$B/daemon.lock")")
for _ in $(seq 1 100); do
    if "$BIN" --home "$A" peers --json | grep -q '"connected": true'; then break; fi
    sleep 0.1
done
run --home "$A" peers
run --home "$B" peers
run --home "$A" status

say "Stopping both daemons"
run --home "$A" stop
run --home "$B" stop
pids=()

say "Done. Everything is in $DEMO"
echo "  alice's folder: $FA"
echo "  bob's folder:   $FB"
echo "  homes (identity, config, index, logs): $A  $B"
