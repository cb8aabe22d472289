"""Chunk-list deltas (docs/protocol.md §6.6) between real daemons: a small
edit in the middle of a big multi-chunk file announces its chunk list as a
delta against the version the peer has (index bytes far below the full
list, both ways), and a delta whose base the receiver no longer has is
never guessed: the receiver reconnects, asks for lists, and converges."""
import hashlib
import os

from conftest import free_udp_port, wait_for

MIB = 1024 * 1024
BLOCK = 4 + 32  # one entry of a full chunk list on the wire
CHUNK_MAX = 256 * 1024


def setup_pair(devices, tmp_path):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    a.ok("peer", "add", b.id, "--name", b.name, "--addr", b.addr())
    b.ok("peer", "add", a.id, "--name", a.name, "--addr", a.addr())
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    return a, b, fa, fb


def digest(p):
    try:
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def idx(dev, other):
    return (dev.peer_info(other) or {}).get("index", {})


def settled(*devs):
    for d in devs:
        if d.run("sync", "--wait", "--timeout", "30").rc != 0:
            return False
    return True


def overwrite(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def test_middle_edit_sends_a_delta_both_ways(devices, tmp_path):
    a, b, fa, fb = setup_pair(devices, tmp_path)
    size = 40 * MIB + 123
    with open(fa / "big.bin", "wb") as f:
        f.write(os.urandom(size))
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    a.start()
    b.start()
    wait_for(lambda: digest(fb / "big.bin") == digest(fa / "big.bin"), timeout=90, interval=0.3,
             what="big.bin on B")
    wait_for(lambda: settled(a, b), timeout=60, what="both settled")
    # Whatever the chunker did, the list has at least size / 256 KiB blocks.
    list_min = size // CHUNK_MAX * BLOCK
    a0, b0 = idx(a, b), idx(b, a)

    overwrite(fa / "big.bin", size // 2, os.urandom(4096))
    a.ok("sync")
    wait_for(lambda: digest(fb / "big.bin") == digest(fa / "big.bin"), timeout=60, interval=0.2,
             what="the edit on B")
    # B re-announces the version it applied; wait until A has it (quiet on both).
    wait_for(lambda: idx(b, a)["deltas_sent"] > b0["deltas_sent"] and settled(a, b),
             timeout=60, what="B's re-announcement")
    a1, b1 = idx(a, b), idx(b, a)
    sent_a = a1["bytes_sent"] - a0["bytes_sent"]
    sent_b = b1["bytes_sent"] - b0["bytes_sent"]
    print(f"index bytes for the edit: A->B {sent_a}, B->A {sent_b}; full list >= {list_min}")
    assert a1["deltas_sent"] > a0["deltas_sent"]
    assert b1["deltas_received"] > b0["deltas_received"]
    assert a1["deltas_received"] > a0["deltas_received"]
    assert b1["delta_misses"] == 0 and a1["delta_misses"] == 0
    # One changed chunk or two: a few hundred bytes, where the list is > 5 KB.
    assert 0 < sent_a < 1500 and sent_a * 4 < list_min
    assert 0 < sent_b < 1500 and sent_b * 4 < list_min
    assert b1["bytes_received"] - b0["bytes_received"] == sent_a

    # An append and a truncation also go as deltas and converge.
    with open(fa / "big.bin", "ab") as f:
        f.write(os.urandom(300 * 1024))
    a.ok("sync")
    wait_for(lambda: digest(fb / "big.bin") == digest(fa / "big.bin"), timeout=60, interval=0.2,
             what="the append on B")
    os.truncate(fa / "big.bin", size // 3)
    a.ok("sync")
    wait_for(lambda: digest(fb / "big.bin") == digest(fa / "big.bin"), timeout=60, interval=0.2,
             what="the truncation on B")
    assert idx(a, b)["deltas_sent"] >= a1["deltas_sent"] + 2
    assert idx(b, a)["delta_misses"] == 0


def digests(root):
    out = set()
    for p in root.iterdir():
        if p.name != ".landropic" and p.is_file():
            out.add(digest(p))
    return out


def test_missing_base_is_resent_as_a_list(devices, tmp_path):
    """B announces R, then changes the file again while stopped (R2): A
    (send-only, so it keeps R as B's record without applying it) edits its
    copy (A2) and announces it as a delta against R, which B no longer has
    anywhere. B must not guess: it reconnects asking for lists up to that
    entry, gets A2's full list, and keeps both versions (a conflict)."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    size = 24 * MIB + 5
    with open(fa / "big.bin", "wb") as f:
        f.write(os.urandom(size))
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id, "--mode", "send-only")
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    a.start()
    b.start()
    wait_for(lambda: digest(fb / "big.bin") == digest(fa / "big.bin"), timeout=90, interval=0.3,
             what="big.bin on B")
    wait_for(lambda: settled(b), timeout=60, what="B settled")
    a0 = idx(a, b)

    overwrite(fb / "big.bin", size // 4, os.urandom(8192))  # R
    b.ok("sync")
    wait_for(lambda: idx(a, b)["deltas_received"] > a0["deltas_received"], timeout=60,
             what="R announced to A as a delta")
    b.stop()
    overwrite(fb / "big.bin", 3 * size // 4, os.urandom(8192))  # R2, while B is down
    r2 = digest(fb / "big.bin")
    overwrite(fa / "big.bin", size // 2, os.urandom(8192))  # A2: a delta against R
    a.ok("sync")
    a2 = digest(fa / "big.bin")
    b.start()
    wait_for(lambda: {a2, r2} <= digests(fb), timeout=90, interval=0.3,
             what="both A2 and R2 kept on B")
    bi = idx(b, a)
    print("B index counters:", bi)
    assert bi["delta_misses"] >= 1
    # A (send-only) never took B's versions.
    assert digest(fa / "big.bin") == a2
    # Quiet afterwards: no reconnect loop (the list was accepted once).
    wait_for(lambda: settled(b), timeout=60, what="B settled after the miss")
    m = idx(b, a)["delta_misses"]
    assert {a2, r2} <= digests(fb)
    assert idx(b, a)["delta_misses"] == m
