"""The daemon, its control API and the QUIC transport, driven through the CLI
with real daemons on loopback."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import BIN, EventStream, remove_marker, wait_for


def connected(a, b):
    p = a.peer_info(b)
    return p is not None and p["connected"]


def pair_up(a, b):
    a.ok("peer", "add", b.id, "--name", b.name, "--addr", b.addr())
    b.ok("peer", "add", a.id, "--name", a.name, "--addr", a.addr())


def two(devices, free_port):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_port(), free_port()
    pair_up(a, b)
    return a, b


@pytest.fixture
def free_port():
    from conftest import free_udp_port
    return free_udp_port


def test_two_daemons_connect(devices, free_port):
    a, b = two(devices, free_port)
    t0 = time.time()
    a.start()
    b.start()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=5, what="both connected")
    assert time.time() - t0 < 10
    pa = a.peer_info(b)
    assert pa["name"] == "bob" and pa["addresses"] == [b.addr()]
    assert pa["bytes_sent"] > 0 and pa["bytes_received"] > 0  # Hello payloads
    st = a.ok("status", "--json").json()
    assert st == {"folders": []}
    pair = a.ok("pair").out
    assert a.id in pair and f"127.0.0.1:{a.port}" in pair


def test_unnamed_peer_shown_by_its_announced_name(devices, free_port):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_port(), free_port()
    a.ok("peer", "add", b.id, "--addr", b.addr())  # no --name
    b.ok("peer", "add", a.id, "--name", "my-alice", "--addr", a.addr())

    def line(dev, other):
        return [ln for ln in dev.ok("peers").out.splitlines() if ln.startswith(other.id)][0]

    assert line(a, b).split()[1] == "-"
    a.start()
    b.start()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=10, what="both connected")
    assert line(a, b).split()[1:3] == ["(bob)", "connected"], line(a, b)
    assert a.peer_info(b)["name"] == "" and a.peer_info(b)["device_name"] == "bob"
    # A name given with --name is what is shown, not the announced one.
    assert line(b, a).split()[1] == "my-alice", line(b, a)


def test_second_daemon_same_home_refused(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    r = a.run("daemon", "--listen", f"127.0.0.1:{free_port()}")
    assert r.rc == 1
    assert str(a.pid) in r.err and "already running" in r.err
    r = a.run("daemon", "--listen", f"127.0.0.1:{free_port()}", "--detach")
    assert r.rc == 1 and str(a.pid) in r.err
    assert a.alive()
    # The same address twice is the user's slip, not a port in use elsewhere.
    addr = f"127.0.0.1:{free_port()}"
    r = b.run("daemon", "--listen", addr, "--listen", addr, "--detach")
    assert r.rc == 2 and f"--listen {addr} given twice" in r.err and not b.alive(), r


def test_start_failure_exits_cleanly(devices, free_port, tmp_path):
    """A daemon that cannot bind says so in one line and exits 1, with the jobs
    start-up had queued finished first (they used to run on while the index was
    freed), and a --detach child does not live on."""
    a, b = two(devices, free_port)
    (tmp_path / "fb").mkdir()
    b.ok("folder", "add", str(tmp_path / "fb"), "--id", "f")
    a.start()
    for i in range(4):
        extra = ["--detach"] if i % 2 else []
        r = b.run("daemon", "--listen", a.addr(), *extra, timeout=30)
        assert r.rc == 1, r
        # In the foreground the log goes to stderr too; the error is the last line.
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert lines and a.addr() in lines[-1] and lines[-1].startswith("landropic: "), r.err
        assert len(lines) == 1 or not extra, r.err
        assert "Sanitizer" not in r.err and "runtime error" not in r.err, r.err
        pid = b.daemon_pid()
        wait_for(lambda: not pid or not os.path.exists(f"/proc/{pid}"), timeout=10,
                 what="the failed daemon gone")
    assert a.alive()


def test_stop_is_graceful(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    b.start()
    wait_for(lambda: connected(a, b), timeout=5, what="connected")
    pid = a.pid
    r = a.run("stop")
    assert r.rc == 0, r
    # Gone, or a zombie left to be reaped with no thread still running (a zombie leader
    # whose threads were still ending counted as gone, and stop returned 1.4 s early).
    try:
        fields = open(f"/proc/{pid}/stat").read().split(")")[-1].split()
        assert fields[0] == "Z" and int(fields[17]) == 1, fields
    except FileNotFoundError:
        pass
    assert not os.path.exists(os.path.join(a.home, "control.sock"))
    assert a.run("status").rc == 4
    # The peer notices the orderly close promptly (CONNECTION_CLOSE, not the idle timeout).
    wait_for(lambda: not connected(b, a), timeout=5, what="b sees a gone")
    a.pid = None


def test_stop_during_a_long_first_scan_ends_it(devices, free_port, tmp_path):
    """`stop` while the first scan hashes a large file ends the scan at its
    next read instead of waiting for the whole file: not a folder error, and
    the next start scans again and indexes the file."""
    a = devices("alice")
    a.init()
    a.port = free_port()
    root = tmp_path / "docs"
    root.mkdir()
    with open(root / "big.img", "wb") as f:
        f.truncate(64 << 30)  # sparse: read from memory, only hashed
    a.ok("folder", "add", str(root), "--id", "docs")
    a.start()

    def state():
        return a.ok("status", "--json").json()["folders"][0]["state"]
    wait_for(lambda: state() == "scanning", timeout=30, interval=0.05, what="the scan running")
    r = a.run("stop")
    assert r.rc == 0, r
    assert not a.alive()
    log = open(os.path.join(a.home, "landropic.log"), errors="replace").read()
    assert "folder=docs scan stopped: the daemon is stopping" in log
    assert "scan failed" not in log
    a.pid = None
    # The next start scans again (a small file instead: its end is awaited).
    (root / "big.img").unlink()
    (root / "small.txt").write_bytes(b"small\n")
    a.start()
    a.ok("sync", "--wait", "--timeout", "30")
    st = a.ok("status", "--json").json()["folders"][0]
    assert st["files"] == 1, st


def test_sigterm_is_graceful(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    pid = a.pid
    os.kill(pid, 15)
    wait_for(lambda: not a.alive(), timeout=10, what="exit on SIGTERM")
    assert not os.path.exists(os.path.join(a.home, "control.sock"))


def test_unadded_device_is_refused(devices, free_port):
    a, b = two(devices, free_port)
    c = devices("mallory")
    c.init()
    c.port = free_port()
    c.ok("peer", "add", a.id, "--addr", a.addr())
    a.start()
    ev = subprocess.Popen([BIN, "--home", a.home, "events", "--json"], stdout=subprocess.PIPE,
                          text=True)
    try:
        time.sleep(0.3)
        c.start()
        log = os.path.join(a.home, "landropic.log")
        wait_for(lambda: c.id in open(log).read(), timeout=10, what="refusal logged with ID")
        time.sleep(1.5)
        assert not connected(c, a)
        info = c.peer_info(a)
        assert info["bytes_received"] == 0
        assert a.peer_info(c) is None
        # Rate-limited: C retries with backoff, but the log names it once a minute at most.
        time.sleep(3)
        lines = [l for l in open(log) if c.id in l and "refused" in l]
        assert 1 <= len(lines) <= 2, lines  # one report (transport + daemon line)
        # The refused side says so too (it logged nothing: black-box round
        # 33), once, though it dials again and again.
        with open(os.path.join(c.home, "landropic.log")) as f:
            told = [l for l in f if "refused our handshake" in l]
        assert len(told) == 1 and f"peer={a.id[:7]}" in told[0], told
    finally:
        ev.terminate()
        out, _ = ev.communicate(timeout=10)
    events = [json.loads(l) for l in out.splitlines() if l.strip()]
    refused = [e for e in events if e.get("type") == "handshake_refused"]
    assert refused and refused[0]["device"] == c.id
    # Once added, the same device connects.
    a.ok("peer", "add", c.id)
    wait_for(lambda: connected(c, a), timeout=70, what="c connects after being added")


def test_peer_remove_disconnects(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    b.start()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=5, what="connected")
    a.ok("peer", "remove", b.id)
    assert a.peer_info(b) is None
    wait_for(lambda: not connected(b, a), timeout=5, what="b disconnected")
    # b keeps redialling but a refuses it now.
    time.sleep(2)
    assert not connected(b, a)


def test_peer_removed_and_added_again_keeps_its_byte_counters(devices, free_port):
    """peers' counters count since the daemon started: removing a peer and
    adding it again on a running daemon must not start them from zero."""
    a, b = two(devices, free_port)
    a.start()
    b.start()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=5, what="connected")
    before = a.peer_info(b)
    assert before["bytes_sent"] > 0 and before["bytes_received"] > 0
    a.ok("peer", "remove", b.id)
    wait_for(lambda: not connected(b, a), timeout=5, what="b disconnected")
    a.ok("peer", "add", b.id, "--name", b.name, "--addr", b.addr())
    after = a.peer_info(b)
    assert after["bytes_sent"] >= before["bytes_sent"], (before, after)
    assert after["bytes_received"] >= before["bytes_received"], (before, after)
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=70, what="reconnected")
    # The new connection's HELLO on top (it may have been counted in `after`
    # already: the add dials at once).
    again = a.peer_info(b)
    assert again["bytes_sent"] > before["bytes_sent"], (before, again)


def test_sigkill_then_restart_reconnects(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    b.start()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=5, what="connected")
    b.kill()
    b.start()
    t0 = time.time()
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=10, what="reconnected")
    assert time.time() - t0 < 10


def test_short_idle_timeout_keeps_a_quiet_connection(devices, free_port):
    """The keep-alive is at most a third of the idle timeout: with a 15 s
    keep-alive, an idle timeout of 6 s dropped every quiet connection each
    6 s and peers flapped between connected and not."""
    a, b = two(devices, free_port)
    a.start("--idle-timeout", "6")
    b.start("--idle-timeout", "6")
    wait_for(lambda: connected(a, b) and connected(b, a), timeout=10, what="connected")
    for _ in range(14):
        time.sleep(1)
        assert connected(a, b) and connected(b, a)
    with open(os.path.join(a.home, "landropic.log")) as f:
        log = f.read()
    assert log.count("peer connected") == 1, log.count("peer connected")


def test_listen_on_ipv4_and_ipv6_wildcard_of_one_port(devices, free_port):
    """`--listen 127.0.0.1:P --listen [::]:P`: the IPv6 wildcard is made
    IPv6-only (dual-stack, it took the IPv4 side of the port too and the
    daemon failed with "Address already in use"); peers reach it both ways."""
    a, b = two(devices, free_port)
    c = devices("carol")
    c.init()
    c.port = free_port()
    a.ok("peer", "add", c.id, "--name", "carol")
    c.ok("peer", "add", a.id, "--name", "alice", "--addr", f"[::1]:{a.port}")
    a.start("--listen", f"[::]:{a.port}")
    b.start()
    c.start("--listen", f"[::1]:{c.port}")
    wait_for(lambda: connected(b, a) and connected(c, a), timeout=10,
             what="b over IPv4 and c over IPv6")


def test_config_applies_to_running_daemon(devices, free_port, tmp_path):
    a, b = two(devices, free_port)
    a.ok("peer", "remove", b.id)
    a.start()
    b.start()
    time.sleep(1)
    assert not connected(a, b)
    # Adding the peer while the daemon runs dials it at once, without restart.
    a.ok("peer", "add", b.id, "--addr", b.addr())
    wait_for(lambda: connected(a, b), timeout=5, what="connected after live peer add")
    f = tmp_path / "live"
    f.mkdir()
    (f / "x").write_text("x")
    a.ok("folder", "add", str(f), "--share", b.id)
    # A usage error the daemon finds reads as the command's own usage error.
    r = a.run("folder", "share", "live", a.id)
    assert r.rc == 2 and r.err == f"landropic folder share: {a.id} is this device's own ID " \
                                  "(see 'landropic folder share --help')\n", r
    st = wait_for(lambda: [x for x in a.ok("status", "--json").json()["folders"]
                           if x["id"] == "live" and x["state"] == "idle"], timeout=10,
                  what="folder scanned")
    entry = st[0]
    assert set(entry) >= {"id", "path", "state", "in_sync", "need_files", "need_bytes",
                          "conflicts", "errors"}
    doc = a.ok("scan", "--json", "live").json()
    assert doc["folders"][0]["files"] == 1
    assert a.ok("sync", "--wait", "--timeout", "20").rc == 0
    a.ok("folder", "remove", "live")
    assert (f / "x").exists()
    assert a.run("status", "live").rc == 1


def test_control_socket_survives_garbage(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    path = os.path.join(a.home, "control.sock")
    for payload in (b"garbage\n", b"{\"id\": 1}\n", b"\xff\xfe\n", b"[1,2,3]\n",
                    b"{\"id\":1,\"method\":\"nope\",\"params\":{}}\n", b"x" * 3_000_000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        try:
            s.sendall(payload)
            s.settimeout(5)
            s.recv(65536)
        except OSError:
            pass
        s.close()
    assert a.ok("status", "--json").json() == {"folders": []}


def test_control_socket_folder_params_checked(devices, free_port, tmp_path):
    """A `folder` that is not a string was taken for none (status answered
    every folder), and `conflicts` with two folder IDs answered `notfound`
    for the first instead of the usage error (black-box round 21b)."""
    a, _ = two(devices, free_port)
    a.start()
    (tmp_path / "d").mkdir()
    a.ok("folder", "add", str(tmp_path / "d"), "--id", "d")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(a.home, "control.sock"))
    f = s.makefile("rb")
    s.settimeout(30)

    def call(method, params):
        s.sendall((json.dumps({"id": 1, "method": method, "params": params}) + "\n").encode())
        return json.loads(f.readline())

    try:
        for method in ("status", "scan", "conflicts", "sync"):
            for bad in (5, ["d"], {"id": "d"}, True):
                r = call(method, {"folder": bad})
                assert r["error"]["code"] == "bad_request" and r["error"]["exit"] == 2, \
                    (method, bad, r)
                assert "'folder'" in r["error"]["message"], r
        for ids in (["a", "b"], ["d", "d"]):
            r = call("conflicts", {"folders": ids})
            assert r["error"]["code"] == "bad_request" and "at most one" in r["error"]["message"], r
        assert call("status", {"folder": None})["result"]["folders"][0]["id"] == "d"
        assert call("status", {"folder": "d"})["result"]["folders"][0]["id"] == "d"
        assert call("status", {"folder": "x"})["error"]["code"] == "notfound"
    finally:
        f.close()
        s.close()


def test_daemon_starting_or_deaf_is_not_called_absent(devices, free_port, tmp_path):
    """A daemon holds its lock before it listens: commands in that window
    waited for nothing and said 'daemon not running' (exit 4), and config
    commands failed. A daemon whose socket is gone is named, exit 1."""
    a, b = two(devices, free_port)
    a.start()
    # Commands racing a start: every one reaches the daemon.
    a.stop()
    p = subprocess.Popen([BIN, "--home", a.home, "daemon", "--listen", a.addr(), "--detach"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for i in range(15):
            (tmp_path / f"f{i}").mkdir()
            r = a.run("folder", "add", str(tmp_path / f"f{i}"), "--id", f"f{i}")
            assert r.rc == 0, r.err
    finally:
        assert p.wait(timeout=30) == 0, p.stderr.read()
    a.pid = a.daemon_pid()
    ids = {f["id"] for f in a.ok("folders", "--json").json()["folders"]}
    assert {f"f{i}" for i in range(15)} <= ids
    # Its socket removed: named with its PID, exit 1, not 'not running'.
    os.unlink(os.path.join(a.home, "control.sock"))
    r = a.run("status", timeout=60)
    assert r.rc == 1, r
    assert f"PID {a.pid}" in r.err and "control.sock" in r.err and len(r.err.splitlines()) == 1
    os.kill(a.pid, 15)
    wait_for(lambda: not os.path.exists(f"/proc/{a.pid}") or
             open(f"/proc/{a.pid}/stat").read().split(") ")[1].startswith("Z"),
             timeout=30, what="daemon gone after SIGTERM")
    a.pid = None


def test_events_stream(devices, free_port):
    a, b = two(devices, free_port)
    a.start()
    ev = EventStream(a)
    try:
        time.sleep(0.3)
        b.start()
        wait_for(lambda: connected(a, b), timeout=5, what="connected")
        a.ok("peer", "add", b.id, "--name", "bobby")
        ev.wait(lambda evs: {"peer_connected", "config_changed"} <= {e["type"] for e in evs},
                what="peer_connected and config_changed")
    finally:
        ev.stop()
    assert a.alive()  # the reader went away: no SIGPIPE death


def test_state_commands_with_daemon(devices, free_port, tmp_path):
    a, b = two(devices, free_port)
    f = tmp_path / "st"
    f.mkdir()
    (f / "one").write_text("1")
    a.ok("folder", "add", str(f), "--share", b.id)
    a.start()
    assert a.ok("sync", "--wait", "--timeout", "30").rc == 0
    assert a.ok("sync", "st", "--wait", "--timeout", "30").rc == 0
    assert a.run("sync", "nosuch", "--wait").rc == 1
    assert a.run("sync", "--timeout", "soon").rc == 2
    # A timeout without --wait was ignored (exit 0 at once): a usage error now.
    r = a.run("sync", "--timeout", "5")
    assert r.rc == 2 and "--timeout needs --wait" in r.err, r
    st = a.ok("status", "st", "--json").json()["folders"]
    assert len(st) == 1 and st[0]["state"] == "idle" and st[0]["files"] == 1
    human = a.ok("status").out
    assert "st" in human and "idle" in human
    assert a.ok("conflicts", "--json").json() == {"conflicts": []}
    assert a.ok("conflicts", "st").rc == 0
    assert a.run("conflicts", "nosuch").rc == 1
    assert a.ok("sessions", "--json").json() == {"sessions": []}
    assert "No sessions" in a.ok("sessions").out
    pj = a.ok("pair", "--json").json()
    assert pj["id"] == a.id and pj["addresses"] == [a.addr()]
    assert pj["link"] == f"landropic://{a.id}?addr={a.addr()}"
    qr = a.ok("pair", "--qr").out
    assert a.id in qr and ("\u2580" in qr or "\u2584" in qr or "\u2588" in qr)
    ev = subprocess.Popen([BIN, "--home", a.home, "events"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        a.ok("scan", "st")
        time.sleep(0.3)
    finally:
        ev.terminate()
        out, _ = ev.communicate(timeout=10)
    # Each line starts with what happened and where (scan_finished had its
    # type after the counts, black-box round 27).
    line = next(ln for ln in out.splitlines() if "type=scan_finished" in ln)
    assert line.startswith("type=scan_finished folder=st "), out
    # Numbers as --json writes them (it printed seconds=0.45318610199999998).
    secs = re.findall(r"\bseconds=(\S+)", out)
    assert secs and all(len(re.sub(r"[^0-9]", "", v).lstrip("0")) <= 9 for v in secs), out
    r = a.run("scan", "nosuch")
    assert r.rc == 1 and "nosuch" in r.err


def test_wildcard_listen_pair_lists_interfaces(devices, free_port):
    a = devices("wild")
    a.init()
    port = free_port()
    # No discovery: a wildcard listener would announce on the host's own
    # interfaces, and tests send traffic only to loopback or their namespaces.
    r = a.run("daemon", "--listen", f"0.0.0.0:{port}", "--detach", "--no-discovery")
    assert r.rc == 0, r
    a.pid = a.daemon_pid()
    pj = a.ok("pair", "--json").json()
    assert pj["addresses"] and all(x.endswith(f":{port}") for x in pj["addresses"]), pj
    # The host's interface addresses, for another device: loopback ones only
    # when there is nothing else (another device told 127.0.0.1 dials itself).
    loop = [x for x in pj["addresses"] if x.startswith("127.") or x.startswith("[::1]:")]
    assert not loop or loop == pj["addresses"], pj
    assert all(f"addr={x}" in pj["link"] for x in pj["addresses"]), pj


def test_scan_through_daemon_reports_folder_errors(devices, free_port, tmp_path):
    a, b = two(devices, free_port)
    f = tmp_path / "gone"
    f.mkdir()
    (f / "x").write_text("x")
    a.ok("folder", "add", str(f))
    a.start()
    assert a.ok("scan", "--json").json()["folders"][0]["files"] == 1
    os.rename(f / ".landropic", tmp_path / "marker-away")
    r = a.run("scan", "--json")
    assert r.rc == 1 and ".landropic" in r.err
    assert "error" in json.loads(r.out)["folders"][0]
    fid = json.loads(r.out)["folders"][0]["id"]
    assert r.err.startswith(f"landropic: folder '{fid}': ") and r.err.count("\n") == 1, r.err
    os.rename(tmp_path / "marker-away", f / ".landropic")
    assert a.ok("scan", "--json").json()["folders"][0]["deleted"] == 0


def test_unwritable_index_refuses_to_start(devices, free_port, tmp_path):
    """An index.db SQLite can only read (chattr +i here; mode 0444 for a user)
    stops the daemon at start, naming the file: it started, failed every
    scan, and kept failing after the file was fixed."""
    a, _ = two(devices, free_port)
    f = tmp_path / "f"
    f.mkdir()
    a.ok("folder", "add", str(f), "--id", "f")
    a.ok("scan")
    db = os.path.join(a.home, "index.db")
    if subprocess.run(["chattr", "+i", db], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported here")
    try:
        r = a.run("daemon", "--listen", a.addr(), "--detach")
        assert r.rc == 1 and "index.db cannot be written" in r.err, r
        assert not a.run("status").rc == 0
    finally:
        subprocess.run(["chattr", "-i", db], capture_output=True)
    a.start()
    (f / "x").write_text("x")
    assert a.run("sync", "--wait", "--timeout", "30").rc == 0
    assert a.ok("status", "--json").json()["folders"][0]["errors"] == []


def test_home_that_takes_no_new_file_names_the_cause(devices, free_port, tmp_path):
    """No index.db yet and a home where none can be created (chattr +i; a
    directory without write permission for a user): the message names the
    cause, not SQLite's "unable to open database file"."""
    a, _ = two(devices, free_port)
    f = tmp_path / "f"
    f.mkdir()
    a.ok("folder", "add", str(f), "--id", "f")
    for name in os.listdir(a.home):
        if name.startswith("index.db"):
            os.unlink(os.path.join(a.home, name))
    if subprocess.run(["chattr", "+i", a.home], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported here")
    try:
        r = a.run("scan")
        assert r.rc == 1, r
        assert "index.db: cannot create it: Operation not permitted" in r.err, r
    finally:
        subprocess.run(["chattr", "-i", a.home], capture_output=True)
    a.ok("scan")


def test_peer_without_address_shows_where_it_is_connected_from(devices, free_port):
    """Alice added bob without an address (as pairing or discovery leaves
    it); bob dials her. Human `peers` showed bob connected with no address
    at all (black-box round 20); it now shows where he is connected from,
    as `peers --json` does in `address`."""
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_port(), free_port()
    a.ok("peer", "add", b.id, "--name", "bob")
    b.ok("peer", "add", a.id, "--name", "alice", "--addr", a.addr())
    a.start()
    b.start()
    wait_for(lambda: connected(a, b), timeout=10, what="bob connected to alice")
    live = a.peer_info(b)["address"]
    line = [ln for ln in a.ok("peers").out.splitlines() if ln.startswith(b.id)][0]
    assert line.split()[1:4] == ["bob", "connected", live], line
    # Bob's configured address is the one he is connected to: shown once.
    line = [ln for ln in b.ok("peers").out.splitlines() if ln.startswith(a.id)][0]
    assert line.split()[1:4] == ["alice", "connected", a.addr()] and "now" not in line, line


def test_folder_whose_root_is_not_utf8(devices, free_port, tmp_path):
    """A folder whose root's name is not UTF-8, through the daemon: its scan
    error (marker gone) reached neither `scan` (exit 0, no error in the
    JSON) nor `status` (state error, empty `errors`), and `folder remove`
    removed it but failed ("the daemon built no result"): every JSON
    string built from the root's raw bytes was refused (black-box round 20)."""
    a, _ = two(devices, free_port)
    root = os.path.join(bytes(tmp_path), b"r\xffoot")
    os.mkdir(root)
    a.start()
    assert a.run("folder", "add", os.fsdecode(root), "--id", "odd").rc == 0
    a.ok("scan", "odd")
    remove_marker(root)
    r = a.run("scan", "odd", "--json")
    assert r.rc == 1 and r.err.startswith("landropic: folder 'odd': ") and "missing" in r.err, r
    assert "missing" in json.loads(r.out)["folders"][0]["error"], r
    st = a.ok("status", "odd", "--json").json()["folders"][0]
    assert st["state"] == "error" and "missing" in st["errors"][0]["error"], st
    # A folder-level entry has the items' keys too (black-box round 28 F14).
    e = st["errors"][0]
    assert e["path"] == "" and e["since"] <= e["last"] and e["attempts"] >= 1, e
    assert a.run("scan", "odd").rc == 1
    e2 = a.ok("status", "odd", "--json").json()["folders"][0]["errors"][0]
    assert e2["since"] == e["since"] and e2["attempts"] > e["attempts"], (e, e2)
    r = a.run("folder", "remove", "odd")
    assert r.rc == 0, r
    assert "odd" not in a.ok("folders").out
