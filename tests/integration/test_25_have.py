"""HAVE (docs/protocol.md §6.10): a device still downloading a version
announces the chunks it holds, and a peer pulling the same version fetches
some of them from it before it has the whole file.

Three real daemons on loopback. Alice holds a 64 MiB file. Bob and Carol
reach her only through pacing UDP relays (about 6 MB/s each, like a slow
uplink); Bob and Carol are connected directly. Bob starts first and gets a
head start of more than half the file; then Carol starts. Her first 32 MiB
of requests (the per-peer window) go to Alice, the only holder in her
index; Bob's HAVE makes him a source of what he holds, and with nothing
outstanding at him the next chunks go to him. Carol's daemon logs how many
chunks of the file came from peers still downloading it; that must be more
than none, and every copy must be byte-identical at the end.
"""
import collections
import hashlib
import os
import re
import select
import socket
import threading
import time

from conftest import free_udp_port, share_big_file, wait_for

SIZE = 64 * 1024 * 1024
HEAD_START = 36 * 1024 * 1024
RATE = 6 * 1024 * 1024  # bytes/s from Alice through each relay


class Pacer(threading.Thread):
    """Forwards datagrams between one client and a server; the server's
    datagrams leave at most `rate` bytes/s (a token bucket with a bounded
    queue that drops its tail, as a slow link's router would)."""

    def __init__(self, server_port, rate, queue_max=256 * 1024, burst=64 * 1024):
        super().__init__(daemon=True)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.front.setblocking(False)
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.back.setblocking(False)
        self.server = ("127.0.0.1", server_port)
        self.client = None
        self.rate, self.queue_max, self.burst = rate, queue_max, burst
        self.q = collections.deque()
        self.qbytes = 0
        self.tokens = 0.0
        self.stop_flag = False
        self.sent = 0
        self.dropped = 0

    def run(self):
        last = time.monotonic()
        while not self.stop_flag:
            r, _, _ = select.select([self.front, self.back], [], [], 0.002 if self.q else 0.05)
            for s in r:
                for _ in range(64):
                    try:
                        data, addr = s.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if s is self.front:
                        self.client = addr
                        try:
                            self.back.sendto(data, self.server)
                        except OSError:
                            pass
                    elif self.client is not None:
                        if self.qbytes + len(data) > self.queue_max:
                            self.dropped += 1
                            continue
                        self.q.append(data)
                        self.qbytes += len(data)
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - last) * self.rate)
            last = now
            while self.q and self.tokens >= len(self.q[0]):
                data = self.q.popleft()
                self.qbytes -= len(data)
                self.tokens -= len(data)
                try:
                    self.front.sendto(data, self.client)
                    self.sent += len(data)
                except OSError:
                    pass

    def close(self):
        self.stop_flag = True
        self.join(timeout=5)
        self.front.close()
        self.back.close()


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def log_text(dev):
    try:
        with open(os.path.join(dev.home, "landropic.log"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def received_from(dev, other):
    info = dev.peer_info(other)
    return info["bytes_received"] if info else 0


def test_downloader_serves_what_it_holds(devices, tmp_path):
    a, b, c = devices("alice"), devices("bob"), devices("carol")
    for d in (a, b, c):
        d.init()
        d.port = free_udp_port()
    to_a_b, to_a_c = Pacer(a.port, RATE), Pacer(a.port, RATE)
    to_a_b.start()
    to_a_c.start()
    try:
        # Alice has no address for Bob or Carol: each dials her through a relay.
        a.ok("peer", "add", b.id, "--name", "bob")
        a.ok("peer", "add", c.id, "--name", "carol")
        b.ok("peer", "add", a.id, "--name", "alice", "--addr", f"127.0.0.1:{to_a_b.port}")
        c.ok("peer", "add", a.id, "--name", "alice", "--addr", f"127.0.0.1:{to_a_c.port}")
        b.ok("peer", "add", c.id, "--name", "carol", "--addr", c.addr())
        c.ok("peer", "add", b.id, "--name", "bob", "--addr", b.addr())
        roots, want = share_big_file((a, b, c), tmp_path, SIZE)

        a.start("--no-discovery")
        b.start("--no-discovery")
        wait_for(lambda: received_from(b, a) >= HEAD_START, timeout=120, interval=0.2,
                 what="bob's head start from alice")
        assert not (roots["bob"] / "big.bin").exists(), "bob finished before carol started"
        c.start("--no-discovery")

        wait_for(lambda: (roots["carol"] / "big.bin").exists(), timeout=150, interval=0.2,
                 what="big.bin on carol")
        wait_for(lambda: (roots["bob"] / "big.bin").exists(), timeout=150, interval=0.2,
                 what="big.bin on bob")
        assert digest(roots["carol"] / "big.bin") == want
        assert digest(roots["bob"] / "big.bin") == want
        for d in (a, b, c):
            assert d.ok("sync", "--wait", "--timeout", "60").rc == 0

        line = wait_for(
            lambda: re.search(r"path=big\.bin written \((\d+) chunks, (\d+) from peers still "
                              r"downloading it\)", log_text(c)),
            timeout=10, what="carol's commit line")
        total, from_partial = int(line.group(1)), int(line.group(2))
        got_b, got_a = received_from(c, b), received_from(c, a)
        print(f"have: carol took {from_partial} of {total} chunks from peers still downloading; "
              f"bytes from bob {got_b}, from alice {got_a}; relays sent "
              f"{to_a_b.sent}/{to_a_c.sent}, dropped {to_a_b.dropped}/{to_a_c.dropped}")
        assert 0 < from_partial < total
        # Carol's session names both devices that served it (it started with
        # Alice alone: Bob was no holder yet).
        sess = [s for s in c.ok("sessions", "--json").json()["sessions"] if s["path"] == "big.bin"]
        assert sess and {a.id, b.id} <= set(sess[0]["peers"]), sess
        assert sess[0]["peer"] == a.id, sess
        # Those chunks came over the direct link, from Bob.
        assert got_b >= 1 << 20, got_b
        # Nobody sent a HAVE the other side refused.
        assert "unexpected HAVE" not in log_text(c) + log_text(b) + log_text(a)
        assert "invalid HAVE" not in log_text(c) + log_text(b) + log_text(a)
    finally:
        to_a_b.close()
        to_a_c.close()
