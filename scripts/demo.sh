#!/usr/bin/env bash
# make demo: two devices on this machine, each with its own home and daemon,
# keep a folder identical over encrypted QUIC on loopback. Everything lives in
# one temporary directory, printed at the end; both daemons are stopped (by
# `landropic stop`, then by PID if needed) before the script exits.
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
show() { printf '$ %s\n' "$*"; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Two devices, alice and bob, each with its own home (identity, config, index)"
ID_A=$("$BIN" --home "$A" init --name alice)
ID_B=$("$BIN" --home "$B" init --name bob)
echo "alice: $ID_A"
echo "bob:   $ID_B"
PA=$(free_port) PB=$(free_port)

say "They trust each other and share a folder called 'docs'"
mkdir -p "$FA" "$FB"
run --home "$A" peer add "$ID_B" --name bob --addr "127.0.0.1:$PB"
run --home "$B" peer add "$ID_A" --name alice --addr "127.0.0.1:$PA"
run --home "$A" folder add "$FA" --id docs --share "$ID_B"
run --home "$B" folder add "$FB" --id docs --share "$ID_A"

say "Both daemons start on loopback (QUIC, mutual TLS pinned to the device IDs)"
run --home "$A" daemon --listen "127.0.0.1:$PA" --detach
pids+=("$(cat "$A/daemon.lock")")
run --home "$B" daemon --listen "127.0.0.1:$PB" --detach
pids+=("$(cat "$B/daemon.lock")")

say "alice creates files"
mkdir -p "$FA/notes" "$FA/photos"
echo "Shopping: milk, eggs" > "$FA/notes/todo.txt"
printf 'Meeting at 10\n' > "$FA/notes/agenda.md"
head -c 20000000 /dev/urandom > "$FA/photos/holiday.raw"
ln -s notes/todo.txt "$FA/todo-link"
run --home "$A" sync --wait --timeout 60
run --home "$B" sync --wait --timeout 60
show ls -lR "$FB" --time-style=+%H:%M:%S -I .landropic
cmp "$FA/photos/holiday.raw" "$FB/photos/holiday.raw" && echo "holiday.raw: identical on both devices"

say "bob edits one file and deletes another; the changes come back to alice"
echo "and bread" >> "$FB/notes/todo.txt"
rm "$FB/notes/agenda.md"
run --home "$B" sync --wait --timeout 60
run --home "$A" sync --wait --timeout 60
show cat "$FA/notes/todo.txt"
show ls "$FA/notes"
echo "(bob's deleted agenda.md is kept on alice under .landropic/versions/)"

say "State"
run --home "$A" status
run --home "$A" peers

say "Stopping both daemons"
run --home "$A" stop
run --home "$B" stop
pids=()

say "Done. Everything is in $DEMO"
echo "  alice's folder: $FA"
echo "  bob's folder:   $FB"
echo "  homes (identity, config, index, logs): $A  $B"
