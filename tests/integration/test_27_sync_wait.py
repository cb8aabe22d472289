"""`sync.state` with "wait_ms" (docs/api.md), what `sync --wait` uses: the
daemon holds the answer until the folders are in sync or the wait ends, so
the CLI learns at once that it is done instead of polling. Driven through the
control socket as a client would, plus the CLI paths that use it."""
import json
import os
import shutil
import signal
import socket
import threading
import time

from conftest import remove_marker, shared_docs, wait_for


class Api:
    """One control-socket connection (newline-delimited JSON, docs/api.md)."""

    def __init__(self, dev):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(os.path.join(dev.home, "control.sock"))
        self.f = self.s.makefile("rb")
        self.next_id = 1

    def send(self, method, params):
        rid = self.next_id
        self.next_id += 1
        line = json.dumps({"id": rid, "method": method, "params": params}) + "\n"
        self.s.sendall(line.encode())
        return rid

    def reply(self, timeout=60):
        self.s.settimeout(timeout)
        line = self.f.readline()
        assert line, "the daemon closed the connection without answering"
        return json.loads(line)

    def call(self, method, params, timeout=60):
        self.send(method, params)
        return self.reply(timeout)

    def close(self):
        self.f.close()
        self.s.close()


pair = shared_docs


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".landropic"]
        for n in files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_held_until_in_sync(devices, tmp_path):
    a, b, fa, fb = pair(devices, tmp_path)
    for i in range(40):
        (fa / f"f{i:02d}.bin").write_bytes(os.urandom(20_000 + i * 3000))
    a.start()
    b.start()
    api = Api(b)
    try:
        # Asked before anything arrived: held, answered done once B has it all
        # (long before the 60 s the client allowed).
        t0 = time.time()
        r = api.call("sync.state", {"folders": ["docs"], "wait_ms": 60000}, timeout=90)
        took = time.time() - t0
        assert r["result"]["done"] is True, r
        assert took < 50, took
        assert tree(fb) == tree(fa)
        assert r["result"]["need_files"] == 0 and r["result"]["errors"] == 0
        # Already in sync, and nothing has changed for longer than the settle
        # time (100 ms, docs/api.md): answered without holding, not at the
        # deadline.
        t0 = time.time()
        r = api.call("sync.state", {"wait_ms": 60000}, timeout=30)
        assert r["result"]["done"] is True, r
        assert time.time() - t0 < 50
        # A change on A: B's held answer comes after the new file is there.
        data = os.urandom(300_000)
        (fa / "late.bin").write_bytes(data)
        a.ok("sync")
        assert a.ok("sync", "--wait", "--timeout", "60").rc == 0
        assert (fb / "late.bin").read_bytes() == data
        assert b.ok("sync", "docs", "--wait", "--timeout", "60").rc == 0
    finally:
        api.close()


def test_not_done_answers_at_the_deadline_then_cli_times_out(devices, tmp_path):
    a, b, fa, fb = pair(devices, tmp_path)
    (fa / "x.txt").write_bytes(b"x\n")
    a.start()
    b.start()
    assert b.ok("sync", "--wait", "--timeout", "60").rc == 0
    # The folder's marker gone: the folder is in error, never done.
    b.stop()
    shutil.rmtree(fb / ".landropic")
    b.start()
    wait_for(lambda: b.ok("status", "--json").json()["folders"][0]["state"] == "error",
             timeout=30, what="B's folder in error")
    api = Api(b)
    try:
        t0 = time.time()
        r = api.call("sync.state", {"folders": ["docs"], "wait_ms": 800}, timeout=30)
        took = time.time() - t0
        res = r["result"]
        assert res["done"] is False and res["errors"] >= 1, r
        assert res["first_error"]["folder"] == "docs", r
        assert took >= 0.7, took  # held for the wait, not answered at once
        # Without wait_ms: answered at once.
        r = api.call("sync.state", {"folders": ["docs"]}, timeout=30)
        assert r["result"]["done"] is False
        # Bad wait_ms: a usage error naming it.
        for bad in (-1, "soon", 1.5, None):
            r = api.call("sync.state", {"wait_ms": bad}, timeout=30)
            assert r["error"]["code"] == "bad_request" and r["error"]["exit"] == 2, (bad, r)
            assert "wait_ms" in r["error"]["message"]
    finally:
        api.close()
    # The CLI: exit 3 at --timeout with the reason, even though each call is held.
    t0 = time.time()
    r = b.run("sync", "--wait", "--timeout", "2")
    assert r.rc == 3, r
    assert "docs" in r.err, r
    assert time.time() - t0 < 30
    # A timeout too short for the daemon to answer says the same, not "no reply".
    r = b.run("sync", "--wait", "--timeout", "0.0001")
    assert r.rc == 3 and r.err.startswith("landropic: not in sync after 0.0001 s (timeout)"), r
    assert "no reply" not in r.err, r


def test_held_request_answered_when_folder_removed_or_daemon_stops(devices, tmp_path):
    a, b, fa, fb = pair(devices, tmp_path)
    b.start()
    b.ok("scan")
    # The marker gone: the folder is in error, never done, so requests stay held.
    remove_marker(fb)
    assert b.run("scan").rc == 1  # names the missing marker
    wait_for(lambda: b.ok("status", "--json").json()["folders"][0]["state"] == "error",
             timeout=30, what="B's folder in error")
    api = Api(b)
    api2 = Api(b)
    try:
        # Removed while held: answered as an unknown folder.
        api.send("sync.state", {"folders": ["docs"], "wait_ms": 60000})
        time.sleep(0.3)
        b.ok("folder", "remove", "docs")
        r = api.reply(timeout=30)
        assert r["error"]["code"] == "notfound" and "docs" in r["error"]["message"], r
        # Stopping while held: answered "stopping", and the daemon exits.
        fc = tmp_path / "C"
        fc.mkdir()
        b.ok("folder", "add", str(fc), "--id", "other", "--share", a.id)
        b.ok("scan", "other")
        remove_marker(fc)
        assert b.run("scan").rc == 1  # names the missing marker
        wait_for(lambda: b.ok("status", "--json").json()["folders"][0]["state"] == "error",
                 timeout=30, what="the other folder in error")
        api2.send("sync.state", {"wait_ms": 60000})
        time.sleep(0.3)
        done = []
        t = threading.Thread(target=lambda: done.append(api2.reply(timeout=30)))
        t.start()
        b.ok("stop")
        t.join(timeout=40)
        assert done and done[0]["error"]["code"] == "stopping", done
        wait_for(lambda: not b.alive(), timeout=20, what="B exits")
    finally:
        api.close()
        api2.close()


def test_waits_for_the_peers_first_scan(devices, tmp_path):
    """B's `sync --wait` right after both start must not end before A's first
    scan has announced what A holds: A says "scanning" in its FOLDERS until a
    burst has carried the scan's finds (docs/protocol.md §6.5, option 5). A
    large file keeps A's scan busy past the first index exchange (before, B
    settled on A's still empty index and returned with nothing)."""
    a, b, fa, fb = pair(devices, tmp_path)
    big = fa / "big.img"
    with open(big, "wb") as f:  # sparse: hashed like data, costs no disk
        f.truncate(768 << 20)
    (fa / "note.txt").write_bytes(b"after the big one\n")
    a.start()
    b.start()
    r = b.run("sync", "docs", "--wait", "--timeout", "120", timeout=180)
    assert r.rc == 0, r
    assert (fb / "note.txt").read_bytes() == b"after the big one\n"
    assert os.path.getsize(fb / "big.img") == 768 << 20
    # Once A's first scan is announced, status says so: nothing to wait for.
    st = b.ok("status", "--json").json()["folders"][0]
    assert st["in_sync"] is True and st["need_files"] == 0, st


def test_peer_that_has_not_shared_the_folder_back(devices, tmp_path):
    """Bob offers "docs" to alice; alice has it too but has not shared it
    with bob. Bob's `sync --wait` returned 0 at once and `status` said in
    sync, with none of alice's files. Now alice says so in FOLDERS (§6.5,
    option 7): bob waits and names why; once alice shares it, bob's files
    arrive and it returns 0."""
    a, b, fa, fb = shared_docs(devices, tmp_path, add_folders=False)
    for i in range(10):
        (fa / f"f{i}").write_bytes(os.urandom(2000))
    a.ok("folder", "add", str(fa), "--id", "docs")  # not shared with bob
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    a.start()
    b.start()
    r = b.run("sync", "--wait", "--timeout", "8", timeout=30)
    assert r.rc == 3, r
    assert f"peer {a.id[:7]} has the folder but does not share it with this device" in r.err, r
    st = b.ok("status", "--json").json()["folders"][0]
    assert st["in_sync"] is False and st["state"] == "idle", st
    assert a.run("sync", "--wait", "--timeout", "30").rc == 0  # alice is not waiting for bob
    a.ok("folder", "share", "docs", b.id)
    assert b.run("sync", "--wait", "--timeout", "60", timeout=90).rc == 0
    assert tree(fb) == tree(fa)
    assert b.ok("status", "--json").json()["folders"][0]["in_sync"] is True


def test_waits_for_a_peer_just_added(devices, tmp_path):
    """B has run for a while without knowing A; then `peer add A`, `folder
    share docs A` and at once `sync --wait`. The wait gave only a daemon's
    start the connect grace: it answered "in sync" before the dial to A had
    a chance, with none of A's files (seen re-adding a removed peer). A
    peer newly added, or a folder newly shared with one, gets the grace too."""
    a, b, fa, fb = shared_docs(devices, tmp_path, add_folders=False)
    for i in range(20):
        (fa / f"f{i}").write_bytes(os.urandom(3000))
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
    b.ok("peer", "remove", a.id)
    b.ok("folder", "add", str(fb), "--id", "docs")
    b.start()
    a.start()
    time.sleep(6)  # past B's start grace
    b.ok("peer", "add", a.id, "--addr", a.addr())
    b.ok("folder", "share", "docs", a.id)
    r = b.run("sync", "--wait", "--timeout", "60", timeout=90)
    assert r.rc == 0, r
    assert tree(fb) == tree(fa)


def test_waits_for_a_peer_that_just_restarted(devices, tmp_path):
    """Bob stops; alice writes a file; bob starts again and at once alice's
    `sync --wait` runs. Her dial to him had failed while he was down, so
    the wait counted him as settled (not connected, past the start grace)
    and returned 0 within 35 ms, before he reconnected, without the file
    (black-box round 20b, 6 of 6). `sync` now dials such a peer at once,
    and the wait holds while that dial is being made."""
    a, b, fa, fb = shared_docs(devices, tmp_path)
    a.start()
    b.start()
    assert a.run("sync", "--wait", "--timeout", "30").rc == 0
    time.sleep(5.5)  # past both daemons' start grace
    for i in range(3):
        b.stop()
        (fa / f"r{i}.txt").write_bytes(b"round %d\n" % i)
        time.sleep(1.2)  # alice's redial to the stopped bob fails meanwhile
        b.start()
        r = a.run("sync", "--wait", "--timeout", "60", timeout=90)
        assert r.rc == 0, r
        assert (fb / f"r{i}.txt").read_bytes() == b"round %d\n" % i, f"round {i}"


def test_a_frozen_peer_is_not_in_sync_with_us(devices, tmp_path):
    """Bob is connected but frozen (SIGSTOP): alice cannot learn how far his
    index has got (SEQ_ASK goes unanswered), so her `sync --wait` is not
    done; at --timeout it exits 3 saying so. Before, it answered in sync at
    once on what it last heard from him. Thawed, the wait ends 0."""
    a, b, fa, fb = pair(devices, tmp_path)
    (fa / "x.txt").write_bytes(b"x\n")
    a.start()
    b.start()
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "30").rc == 0
    os.kill(b.pid, signal.SIGSTOP)
    try:
        r = a.run("sync", "--wait", "--timeout", "3")
        assert r.rc == 3, r
        assert f"asking peer {b.id[:7]} how far its index has got" in r.err, r
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert a.run("sync", "--wait", "--timeout", "30").rc == 0


def test_a_change_just_made_on_the_peer_is_waited_for(devices, tmp_path):
    """Alice writes a file and bob's `sync --wait` starts 20 ms later: her
    watcher had seen the change but not scanned it yet (its debounce), so
    her answer to bob's question (how far her index has got) did not
    include it and bob answered in sync without it (black-box round 27,
    10 of 10). A change seen and not yet scanned is scanned before the
    answer."""
    a, b, fa, fb = pair(devices, tmp_path)
    a.start()
    b.start()
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "30").rc == 0
    for i in range(5):
        (fa / f"quick{i}.txt").write_bytes(b"made just before %d\n" % i)
        time.sleep(0.02)
        assert b.run("sync", "--wait", "--timeout", "30").rc == 0
        assert (fb / f"quick{i}.txt").read_bytes() == b"made just before %d\n" % i, i


def test_a_scan_the_peer_is_running_is_waited_for(devices, tmp_path):
    """Alice's watcher is already hashing a large file moved into her folder
    when bob's `sync --wait` asks how far her index has got: the answer gave
    her index as committed, without that file, and bob returned "in sync"
    without it (black-box round 32, a 300 MB file, 0.5 s after the move).
    The answer now follows a scan queued or running in the folder."""
    a, b, fa, fb = pair(devices, tmp_path)
    a.start()
    b.start()
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "30").rc == 0
    size = 1536 << 20
    for attempt in range(3):
        name = f"big{attempt}.img"
        with open(tmp_path / name, "wb") as f:  # sparse: hashed like data, costs no disk
            f.truncate(size)
        os.rename(tmp_path / name, fa / name)
        seen = False
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            st = a.ok("status", "--json").json()["folders"][0]
            seen = st["state"] == "scanning"
        if not seen:  # the scan was over before we looked: try a new file
            continue
        r = b.run("sync", "--wait", "--timeout", "120", timeout=180)
        assert r.rc == 0, r
        assert os.path.getsize(fb / name) == size
        break
    else:
        raise AssertionError("alice's scan was never seen running")


def test_timeout_during_a_scan_names_the_folder(devices, tmp_path):
    """The timeout line said "not settled (a scan is queued or running)"
    without the folder (black-box round 33)."""
    a, b, fa, fb = pair(devices, tmp_path)
    a.start()
    b.start()
    assert a.run("sync", "--wait", "--timeout", "30").rc == 0
    with open(tmp_path / "big.img", "wb") as f:  # sparse: hashed like data, costs no disk
        f.truncate(3 << 30)
    os.rename(tmp_path / "big.img", fa / "big.img")
    r = a.run("sync", "--wait", "--timeout", "0.2")
    assert r.rc == 3, r
    assert r.err.endswith("not settled (folder docs: a scan is queued or running)\n"), r
    assert a.run("sync", "--wait", "--timeout", "120", timeout=180).rc == 0


def test_timeout_line_names_the_cause_not_a_send_only_need(devices, tmp_path):
    """Alice's folder is send-only and bob changed a file there: that need is
    not pulled and does not hold the wait (docs/modes.md). With bob frozen,
    the wait times out, and the line gave that need as the cause ("1 file
    still needed here", black-box round 28) instead of the frozen peer."""
    a, b, fa, fb = shared_docs(devices, tmp_path, add_folders=False)
    (fa / "x.txt").write_bytes(b"alice\n")
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id, "--mode", "send-only")
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    a.start()
    b.start()
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "30").rc == 0
    (fb / "x.txt").write_bytes(b"bob's edit\n")
    assert b.run("sync", "--wait", "--timeout", "30").rc == 0
    wait_for(lambda: a.ok("status", "--json").json()["folders"][0]["need_files"] == 1,
             timeout=20, what="bob's edit known to alice")
    assert a.run("sync", "--wait", "--timeout", "10").rc == 0  # not counted
    os.kill(b.pid, signal.SIGSTOP)
    try:
        r = a.run("sync", "--wait", "--timeout", "3")
        assert r.rc == 3, r
        assert "still needed here" not in r.err, r
        assert f"asking peer {b.id[:7]}" in r.err, r
    finally:
        os.kill(b.pid, signal.SIGCONT)
    human = a.ok("status").out
    assert "needs 1 file (" in human and "1 not taken (send-only" in human, human
