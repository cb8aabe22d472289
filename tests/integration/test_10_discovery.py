"""LAN discovery in network namespaces: two namespaces joined by a veth pair
(IPv4 198.18.1.0/24 and IPv6 link-local, DAD off, no routes at all: each send
names its interface). Alice is in one namespace; Bob and Carol share the other.
Alice and Bob added each other with no address; Carol trusts Alice but Alice
never added Carol.

- Alice and Bob connect within 10 s of starting, from announcements alone.
- Carol is listed in Alice's `pending` (via discovery) and gets nothing: her
  dials are refused at the handshake.
- Forged announcements (bad signature; a valid signature by a key that does
  not hash to the claimed ID) are ignored, while a valid one from a fresh key
  (the positive control for the Python sender) is listed.
- A captured real announcement replayed later changes nothing.

A second test joins three namespaces (and a fourth device) through a bridge
with multicast snooping off: three devices that added each other with no
address all connect; a device running with --no-discovery is neither heard
nor dialled.

A third test runs over an IPv6-only link: the link-local source of a
datagram cannot be dialled, so the announced ULA address is.

Namespaces and links exist only for this test and are deleted afterwards;
daemons are stopped by PID (conftest)."""
import hashlib
import ipaddress
import os
import random
import struct
import subprocess
import sys
import time
import uuid

import pytest

from conftest import BIN, Device, wait_for

GROUP4 = "239.255.21.37"
MAGIC = b"LRDA"
CTX = b"landropic-announce-v1\0"


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


@pytest.fixture
def lan():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        pytest.skip("no ip command")
    tag = uuid.uuid4().hex[:6]
    a, b = f"lrd-{tag}-a", f"lrd-{tag}-b"
    va, vb = f"lda{tag}", f"ldb{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot create network namespaces: {e.stderr.strip()}")
    try:
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", a)
        sh("ip", "link", "set", vb, "netns", b)
        for ns, dev, ip in ((a, va, "198.18.1.1"), (b, vb, "198.18.1.2")):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "multicast", "on")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield {"a": a, "b": b, "va": va, "vb": vb}
    finally:
        sh("ip", "netns", "del", a, check=False)
        sh("ip", "netns", "del", b, check=False)


class NsDevice(Device):
    def __init__(self, home, name, ns, port, dport):
        super().__init__(home, name)
        self.ns = ns
        self.port = port
        self.dport = dport

    def start(self, *extra):
        p = subprocess.run(["ip", "netns", "exec", self.ns, BIN, "--home", self.home, "daemon",
                            "--listen", f"[::]:{self.port}", "--detach", "--log-level", "debug",
                            "--discovery-port", str(self.dport), *extra],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        self.pid = self.daemon_pid()
        assert self.pid

    def log(self):
        with open(os.path.join(self.home, "landropic.log"), errors="replace") as f:
            return f.read()

    def pending(self):
        return self.ok("peers", "--json").json()["pending"]

    def pending_entry(self, dev_id):
        for p in self.pending():
            if p["id"] == dev_id:
                return p
        return None


# Runs inside a namespace: receive datagrams on the discovery port for `secs`
# seconds (joined on the interface), write them as hex lines to `out`.
CAPTURE = r"""
import socket, struct, sys, time
port, dev, secs, out = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
idx = socket.if_nametoindex(dev)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.255.21.37") + struct.pack("=4si", b"\0" * 4, idx))
s.settimeout(0.2)
end = time.time() + secs
with open(out, "w") as f:
    while time.time() < end:
        try:
            data, src = s.recvfrom(4096)
        except socket.timeout:
            continue
        f.write(data.hex() + "\n")
        f.flush()
"""

# Runs inside a namespace: send each hex datagram of argv[3:] to argv[1]:argv[2].
SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for h in sys.argv[3:]:
    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.6)
"""


def ns_python(ns, code, *args, background=False):
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-c", code, *map(str, args)]
    if background:
        return subprocess.Popen(cmd)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)


def announcement(key, name, *, dev_id=None, ports=(21037,), sign=True, ts=None, hints=()):
    """An announcement built independently of the C code (docs/discovery.md);
    `hints`: IP address texts."""
    from cryptography.hazmat.primitives import serialization as ser
    pub = key.public_key()
    raw = pub.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    spki = pub.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    if dev_id is None:
        dev_id = hashlib.sha256(spki).digest()
    ts = int(time.time() * 1000) if ts is None else ts
    body = MAGIC + bytes([1, 0]) + raw + dev_id + struct.pack(">Q", ts) + os.urandom(16)
    body += bytes([len(name)]) + name + bytes([len(ports)])
    body += b"".join(struct.pack(">H", p) for p in ports) + bytes([len(hints)])
    for h in hints:
        ip = ipaddress.ip_address(h)
        body += bytes([ip.version]) + ip.packed
    sig = key.sign(CTX + body) if sign else bytes(64)
    return body + sig


def raw_id(text_id):
    """32 ID bytes from the text form: base32 of 4 blocks of 13 chars + 1 check char each."""
    import base64
    s = text_id.replace("-", "")
    data = "".join(s[i * 14:i * 14 + 13] for i in range(4))
    return base64.b32decode(data + "====")[:32]


def ann_name(data):
    off = 4 + 2 + 32 + 32 + 8 + 16
    return data[off + 1:off + 1 + data[off]]


def test_discovery_connects_lists_pending_ignores_forged_and_replayed(lan, tmp_path):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    dport = random.randint(30000, 39999)
    a = NsDevice(tmp_path / "a", "alice", lan["a"], 21037, dport)
    b = NsDevice(tmp_path / "b", "bob", lan["b"], 21037, dport)
    c = NsDevice(tmp_path / "c", "carol", lan["b"], 21039, dport)
    cap_file = tmp_path / "captured.hex"
    cap = None
    try:
        for d in (a, b, c):
            d.init()
        a.ok("peer", "add", b.id, "--name", "bob")
        b.ok("peer", "add", a.id, "--name", "alice")
        c.ok("peer", "add", a.id, "--name", "alice")

        # Listen on Alice's side for what she hears, to replay a real one later.
        cap = ns_python(lan["a"], CAPTURE, dport, lan["va"], 8, cap_file, background=True)
        time.sleep(0.5)

        t0 = time.time()
        a.start()
        b.start()
        c.start()
        wait_for(lambda: a.peer_info(b)["connected"] and b.peer_info(a)["connected"],
                 timeout=10, interval=0.1, what="alice and bob connected without addresses")
        took = time.time() - t0
        assert took < 10, took
        print(f"connected {took:.2f} s after the first start")
        assert f"dialling discovered peer id={b.id}" in a.log() or \
            f"dialling discovered peer id={a.id}" in b.log()

        # Carol: listed as pending on Alice's side, with her address; never given anything.
        ent = wait_for(lambda: a.pending_entry(c.id), timeout=10, what="carol pending on alice")
        # "connect" once her dial has been refused, until she is heard again.
        assert ent["name"] == "carol" and ent["via"] in ("discovery", "connect"), ent
        assert "198.18.1.2:21039" in ent["addresses"], ent
        assert ent["last_seen"].endswith("Z")
        assert [p["id"] for p in a.ok("peers", "--json").json()["peers"]] == [b.id]
        assert a.pending_entry(b.id) is None  # added peers are not pending
        human = a.ok("peers").out
        assert "Seen but not added" in human and c.id in human
        wait_for(lambda: f"refused handshake from unknown device id={c.id}" in a.log(),
                 timeout=10, what="carol's dial refused by alice")
        pc = c.peer_info(a)
        assert not pc["connected"] and pc["bytes_received"] == 0

        # The capture must be over before unicast tests: with two sockets on the port,
        # a unicast datagram reaches only one of them.
        cap.wait(timeout=30)
        cap = None

        # Forged announcements, sent from Bob's namespace to Alice's discovery socket.
        good = Ed25519PrivateKey.generate()
        forged = announcement(Ed25519PrivateKey.generate(), b"py-forged", sign=False)
        impostor = announcement(Ed25519PrivateKey.generate(), b"py-impostor",
                                dev_id=raw_id(b.id))
        stale = announcement(Ed25519PrivateKey.generate(), b"py-stale",
                             ts=int(time.time() * 1000) - 120000)
        ns_python(lan["b"], SEND, "198.18.1.1", dport, forged.hex(), impostor.hex(),
                  stale.hex())
        ns_python(lan["b"], SEND, "198.18.1.1", dport, announcement(good, b"py-valid").hex())
        wait_for(lambda: any(p["name"] == "py-valid" for p in a.pending()), timeout=10,
                 what="the valid Python announcement listed (sender works)")
        # Hints that cannot reach the sender from the LAN are not listed (nor dialled).
        bad = ["127.0.0.1", "::1", "255.255.255.255", "224.0.0.1", "0.0.0.0", "fe80::1",
               "::ffff:127.0.0.1"]
        ns_python(lan["b"], SEND, "198.18.1.1", dport,
                  announcement(Ed25519PrivateKey.generate(), b"py-hints", ports=(21050,),
                               hints=bad + ["10.9.8.7"]).hex())
        ent = wait_for(lambda: [p for p in a.pending() if p["name"] == "py-hints"], timeout=10,
                       what="the announcement with hints listed")[0]
        assert ent["addresses"] == ["198.18.1.2:21050", "10.9.8.7:21050"], ent
        names = [p["name"] for p in a.pending()]
        assert "py-forged" not in names and "py-impostor" not in names \
            and "py-stale" not in names, names
        log = a.log()
        assert "announcement signature does not verify" in log
        assert "announcement key does not hash to its device ID" in log
        assert "announcement is stale" in log
        assert a.peer_info(b)["connected"]

        # Replay: a real announcement of Carol's, captured earlier, sent again after
        # Carol has stopped. It must not refresh her entry.
        with open(cap_file) as f:
            caught = [bytes.fromhex(x) for x in f.read().split()]
        carol = [x for x in caught if ann_name(x) == b"carol"]
        assert carol, f"no announcement of carol captured among {len(caught)}"
        c.stop()
        before = a.pending_entry(c.id)
        assert before
        time.sleep(1.5)
        n_replayed = a.log().count("announcement replayed")
        ns_python(lan["b"], SEND, "198.18.1.1", dport, carol[-1].hex())
        wait_for(lambda: a.log().count("announcement replayed") > n_replayed, timeout=10,
                 what="alice refusing the replay")
        after = a.pending_entry(c.id)
        assert after == before, (before, after)
    finally:
        if cap is not None:
            cap.kill()
            cap.wait()
        for d in (a, b, c):
            d.stop()


@pytest.fixture
def bridge3():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        pytest.skip("no ip command")
    tag = uuid.uuid4().hex[:6]
    hub = f"lrd-{tag}-hub"
    names = [f"lrd-{tag}-{i}" for i in range(3)]
    try:
        sh("ip", "netns", "add", hub)
        for n in names:
            sh("ip", "netns", "add", n)
    except subprocess.CalledProcessError as e:
        for n in [hub] + names:
            sh("ip", "netns", "del", n, check=False)
        pytest.skip(f"cannot create network namespaces: {e.stderr.strip()}")
    try:
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i, n in enumerate(names):
            outer, inner = f"ldh{tag}{i}", f"ldn{tag}{i}"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "netns", hub)
            sh("ip", "link", "set", inner, "netns", n)
            sh("ip", "-n", hub, "link", "set", outer, "master", "br0")
            sh("ip", "-n", hub, "link", "set", outer, "up")
            sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{inner}.accept_dad=0")
            sh("ip", "-n", n, "addr", "add", f"198.18.2.{i + 1}/24", "dev", inner)
            sh("ip", "-n", n, "link", "set", inner, "up")
            sh("ip", "-n", n, "link", "set", "lo", "up")
        yield names
    finally:
        for n in names + [hub]:
            sh("ip", "netns", "del", n, check=False)


def test_three_namespaces_on_a_bridge_connect_without_addresses(bridge3, tmp_path):
    dport = random.randint(40000, 49999)
    devs = [NsDevice(tmp_path / n, n, ns, 21037, dport)
            for n, ns in zip(("alice", "bob", "carol"), bridge3)]
    quiet = NsDevice(tmp_path / "dave", "dave", bridge3[2], 21041, dport)
    late = NsDevice(tmp_path / "erin", "erin", bridge3[1], 21043, dport)
    try:
        for d in devs + [quiet, late]:
            d.init()
        for d in devs:
            for o in devs:
                if o is not d:
                    d.ok("peer", "add", o.id, "--name", o.name)
        devs[0].ok("peer", "add", quiet.id, "--name", "dave")
        quiet.ok("peer", "add", devs[0].id, "--name", "alice")
        # Dave knows Bob's address, but Bob never added him.
        quiet.ok("peer", "add", devs[1].id, "--name", "bob", "--addr", "198.18.2.2:21037")
        late.ok("peer", "add", devs[0].id, "--name", "alice")
        quiet.start("--no-discovery")
        late.start()
        t0 = time.time()
        for d in devs:
            d.start()

        def all_up():
            return all(d.peer_info(o)["connected"] for d in devs for o in devs if o is not d)

        wait_for(all_up, timeout=10, interval=0.1, what="three devices connected pairwise")
        print(f"all three pairs connected {time.time() - t0:.2f} s after the first start")
        # Dave runs without discovery: nobody hears him, so nobody can dial him (Alice
        # added him but has no address), and he hears nobody.
        time.sleep(2)
        assert not devs[0].peer_info(quiet)["connected"]
        assert devs[0].pending_entry(quiet.id) is None  # added: never pending
        assert devs[2].pending_entry(quiet.id) is None
        assert quiet.pending() == []
        # His dial to Bob was refused at the handshake: pending on Bob's side, via connect.
        ent = wait_for(lambda: devs[1].pending_entry(quiet.id), timeout=10,
                       what="dave pending on bob via connect")
        assert ent["via"] == "connect" and ent["name"] == "", ent
        assert any(x.endswith(":21041") and "198.18.2.3" in x for x in ent["addresses"]), ent
        assert not quiet.peer_info(devs[1])["connected"]
        assert "discovery: off (--no-discovery)" in quiet.log()
        assert "discovery: started" not in quiet.log()

        # Erin trusts Alice; Alice lists her as pending, accepts her with one
        # `peer add` (no address) and dials her at once from what she heard.
        alice = devs[0]
        ent = wait_for(lambda: alice.pending_entry(late.id), timeout=10, what="erin pending")
        assert "198.18.2.2:21043" in ent["addresses"], ent
        t1 = time.time()
        alice.ok("peer", "add", late.id, "--name", "erin")
        wait_for(lambda: alice.peer_info(late)["connected"], timeout=10, interval=0.1,
                 what="erin connected after peer add")
        print(f"erin connected {time.time() - t1:.2f} s after 'peer add'")
        assert f"dialling added peer id={late.id}" in alice.log()
        assert alice.pending_entry(late.id) is None
    finally:
        for d in devs + [quiet, late]:
            d.stop()


@pytest.fixture
def lan6():
    """Two namespaces on a veth pair with IPv6 only (ULA + link-local, DAD off)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        pytest.skip("no ip command")
    tag = uuid.uuid4().hex[:6]
    a, b = f"lrd-{tag}-6a", f"lrd-{tag}-6b"
    va, vb = f"l6a{tag}", f"l6b{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot create network namespaces: {e.stderr.strip()}")
    try:
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", a)
        sh("ip", "link", "set", vb, "netns", b)
        for ns, dev, ip in ((a, va, "fd00:18::1"), (b, vb, "fd00:18::2")):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0")
            sh("ip", "-n", ns, "-6", "addr", "add", f"{ip}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        sh("ip", "netns", "del", a, check=False)
        sh("ip", "netns", "del", b, check=False)


def test_ipv6_only_link_connects_through_announced_addresses(lan6, tmp_path):
    """Over IPv6 the datagram's source is link-local, which the transport cannot
    dial (no scope ID): the interface's announced ULA address is what is dialled."""
    dport = random.randint(50000, 59999)
    a = NsDevice(tmp_path / "a", "alice", lan6[0], 21037, dport)
    b = NsDevice(tmp_path / "b", "bob", lan6[1], 21037, dport)
    try:
        a.init()
        b.init()
        a.ok("peer", "add", b.id)
        b.ok("peer", "add", a.id)
        a.start()
        b.start()
        wait_for(lambda: a.peer_info(b)["connected"] and b.peer_info(a)["connected"],
                 timeout=10, interval=0.1, what="connected over IPv6 from announcements")
        assert "from=fe80::" in a.log() or "from=fe80::" in b.log()  # heard over IPv6
        assert f"dialling discovered peer id={b.id} at [fd00:18::2]:21037" in a.log() or \
            f"dialling discovered peer id={a.id} at [fd00:18::1]:21037" in b.log()
        assert a.peer_info(b)["address"].startswith("[fd00:18::")
    finally:
        a.stop()
        b.stop()


def test_discovery_port_asked_for_but_taken_stops_the_start(lan, tmp_path):
    """--discovery-port on a port already in use (here the transport's own)
    fails the start, naming it: the daemon started with discovery silently
    off, so peers without an address were never found (black-box run).
    Without --discovery-port the default's failure stays a log warning."""
    a = NsDevice(tmp_path / "a", "alice", lan["a"], 21037, 21037)
    a.init()
    p = subprocess.run(["ip", "netns", "exec", a.ns, BIN, "--home", a.home, "daemon",
                        "--listen", "[::]:21037", "--detach", "--discovery-port", "21037"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "discovery port 21037" in p.stderr, p
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = subprocess.run(["ip", "netns", "exec", a.ns, BIN, "--home", a.home, "daemon",
                        "--listen", "[::]:21038", "--detach"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    a.pid = a.daemon_pid()
    try:
        wait_for(lambda: "peers without an address will not be found" in a.log(), timeout=10,
                 what="the warning")
    finally:
        a.stop()
