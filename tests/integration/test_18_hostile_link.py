"""Hostile case 23: a UDP path that loses 30 % of datagrams each way,
reorders, duplicates and corrupts some, and goes black for 0.5 s out of
every 2.5 - the transfer still completes and the files are byte-identical.
The first blackout starts once 40 datagrams have crossed (the handshake is
over, the 4 MiB cannot have: peers on this host exchange 16 000-byte packets,
so it needs at least 262 of them), because a clock started at the first
datagram let a fast run finish inside the first 2 s of passage and see no
blackout at all.

(Black 5 s out of every 7 stalls: QUIC's retransmission timer backs off
exponentially during each blackout until its probes miss the 2 s windows,
and the connection ends at the idle timeout; noted in docs/testing.md.)

A small UDP relay on 127.0.0.1 sits between the devices: Bob dials Alice at
the relay's address; Alice has no address for Bob, so every datagram of the
one connection crosses the relay. The relay is driven by a seeded random
generator so a failure can be replayed.
"""
import hashlib
import os
import random
import select
import socket
import threading
import time

from conftest import free_udp_port, wait_for

SIZE = 4 * 1024 * 1024


class Relay(threading.Thread):
    """Forwards datagrams between one client and a server, badly."""

    def __init__(self, server_port, seed, loss=0.30, dup=0.02, corrupt=0.02, reorder=0.05,
                 black_on=0.5, black_off=2.0, black_after=40):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.server = ("127.0.0.1", server_port)
        self.client = None
        self.loss, self.dup, self.corrupt, self.reorder = loss, dup, corrupt, reorder
        self.black_on, self.black_off, self.black_after = black_on, black_off, black_after
        self.stop_flag = False
        self.held = []  # (due time, socket, data, address)
        self.counts = {"in": 0, "dropped": 0, "dup": 0, "corrupt": 0, "reordered": 0,
                       "blackholed": 0}
        self.t0 = None  # when the black_after-th datagram arrived

    def blackholed(self):
        # Free passage for the first black_after datagrams, then black_on s
        # of nothing and black_off s of passage, repeated.
        if self.t0 is None:
            if self.counts["in"] < self.black_after:
                return False
            self.t0 = time.monotonic()
        phase = (time.monotonic() - self.t0) % (self.black_on + self.black_off)
        return phase < self.black_on

    def send(self, sock, data, addr):
        r = self.rng.random()
        if r < self.corrupt:
            i = self.rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
            self.counts["corrupt"] += 1
        if self.rng.random() < self.reorder:
            self.held.append((time.monotonic() + self.rng.uniform(0.002, 0.02), sock, data, addr))
            self.counts["reordered"] += 1
            return
        sock.sendto(data, addr)
        if self.rng.random() < self.dup:
            sock.sendto(data, addr)
            self.counts["dup"] += 1

    def run(self):
        while not self.stop_flag:
            r, _, _ = select.select([self.front, self.back], [], [], 0.005)
            now = time.monotonic()
            due = [h for h in self.held if h[0] <= now]
            self.held = [h for h in self.held if h[0] > now]
            for _, sock, data, addr in due:
                sock.sendto(data, addr)
            for s in r:
                data, addr = s.recvfrom(65536)
                self.counts["in"] += 1
                if s is self.front:
                    self.client = addr
                    out, dest = self.back, self.server
                else:
                    if self.client is None:
                        continue
                    out, dest = self.front, self.client
                if self.blackholed():
                    self.counts["blackholed"] += 1
                    continue
                if self.rng.random() < self.loss:
                    self.counts["dropped"] += 1
                    continue
                self.send(out, data, dest)

    def close(self):
        self.stop_flag = True
        self.join(timeout=5)
        self.front.close()
        self.back.close()


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_transfer_survives_loss_reorder_duplication_corruption_and_blackouts(devices, tmp_path):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    relay = Relay(a.port, seed=2323)
    relay.start()
    try:
        # Alice knows Bob but not where he is: only Bob dials, via the relay.
        a.ok("peer", "add", b.id, "--name", "bob")
        b.ok("peer", "add", a.id, "--name", "alice", "--addr", f"127.0.0.1:{relay.port}")
        fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
        fa.mkdir(parents=True)
        fb.mkdir(parents=True)
        (fa / "big.bin").write_bytes(os.urandom(SIZE))
        for i in range(20):
            (fa / f"small{i:02d}.txt").write_bytes(os.urandom(100 + i * 997))
        a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
        b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
        a.start()
        b.start()
        wait_for(lambda: (fb / "big.bin").exists() and len(os.listdir(fb)) >= 22, timeout=240,
                 interval=0.5, what="every file through the hostile link")
        assert digest(fb / "big.bin") == digest(fa / "big.bin")
        for i in range(20):
            assert (fb / f"small{i:02d}.txt").read_bytes() == (fa / f"small{i:02d}.txt").read_bytes()
        c = relay.counts
        print(f"hostile link: {c}")
        # The relay really was hostile.
        assert c["dropped"] > 0.2 * c["in"] and c["corrupt"] > 0 and c["dup"] > 0
        assert c["reordered"] > 0 and c["blackholed"] > 0
    finally:
        relay.close()
