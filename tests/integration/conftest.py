"""Shared fixtures for black-box tests: they drive build/landropic only through
the CLI contract (shared/cli-contract.md), with real daemons on loopback.

Every daemon a test starts is stopped in teardown by its PID (read from the
home's daemon.lock), never by name.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

BIN = os.environ.get("LANDROPIC_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "landropic")
BIN = os.path.abspath(BIN)


SANITIZER_MARKERS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer")


def keep_sanitizer_report(name, text):
    """A sanitizer report found in a daemon's log also goes where `make
    test-sanitize` collects the reports (LANDROPIC_SAN_LOGS), so it fails the
    run even when the test passes on its rerun."""
    where = os.environ.get("LANDROPIC_SAN_LOGS")
    if not where:
        return
    os.makedirs(where, exist_ok=True)
    fd, _ = tempfile.mkstemp(prefix=f"from-log-{name}.", dir=where)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# `make test-sanitize` reruns a failed test once (--reruns 1: sanitizers make
# every daemon several times slower on a shared machine, which stretches
# timing windows); the first attempt's failure is printed at the end, so a
# rerun is visible and can be read, never silent.
_first_attempts = []


def pytest_runtest_logreport(report):
    if report.outcome == "rerun":
        _first_attempts.append(report)


def pytest_terminal_summary(terminalreporter):
    for r in _first_attempts:
        terminalreporter.write_sep("-", f"first attempt of {r.nodeid} ({r.when}), then rerun")
        terminalreporter.write_line(r.longreprtext[-4000:])


def remove_marker(root):
    """Take a folder's .landropic away in one step, as a vanished disk does,
    while its daemon may be running. A pull round (queued after every scan)
    opens the folder's store, which makes .landropic/tmp again if it is
    missing, so an rmtree walking the marker in place could find it "not
    empty". Renamed aside first (atomic), then removed; a straggler the
    daemon makes in the renamed copy does not matter."""
    root = os.fsencode(root)
    aside = os.path.join(os.path.dirname(root.rstrip(b"/")),
                         b".marker-gone-" + os.urandom(4).hex().encode())
    os.rename(os.path.join(root, b".landropic"), aside)
    shutil.rmtree(aside, ignore_errors=True)


# Daemon ports come from below the kernel's ephemeral range (32768-60999
# here): a port the kernel handed out as free (bind to 0) could be taken as
# an ephemeral port by any socket before the daemon bound it, and CI saw
# "Address already in use". Each pytest-xdist worker has its own slice, and
# walks it from a random start, so workers never pick each other's ports.
_PORT_LO, _PORT_HI = 20000, 32000
_port_next = None


def _port_slice():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    idx = int(worker[2:]) if worker[2:].isdigit() else 0
    span = (_PORT_HI - _PORT_LO) // max(count, 1)
    lo = _PORT_LO + (idx % max(count, 1)) * span
    return lo, lo + span


def free_udp_port():
    global _port_next
    lo, hi = _port_slice()
    if _port_next is None or not lo <= _port_next < hi:
        _port_next = lo + int.from_bytes(os.urandom(2), "big") % (hi - lo)
    for _ in range(hi - lo):
        port = _port_next
        _port_next = lo if _port_next + 1 >= hi else _port_next + 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError(f"no free UDP port in {lo}-{hi}")


def two_peers(devices):
    """Alice and bob, initialised, on their own loopback ports, each added
    to the other; daemons not started."""
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    a.ok("peer", "add", b.id, "--name", "bob", "--addr", b.addr())
    b.ok("peer", "add", a.id, "--name", "alice", "--addr", a.addr())
    return a, b


def shared_docs(devices, tmp_path, add_folders=True):
    """Alice and bob on loopback, each added to the other, sharing folder
    "docs" (tmp_path/A/docs and tmp_path/B/docs); daemons not started.
    With add_folders=False the two directories are made but not added (a
    test fills them first). Returns (alice, bob, alice's folder, bob's folder)."""
    a, b = two_peers(devices)
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    if add_folders:
        a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
        b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    return a, b, fa, fb


def mesh(devices, *names):
    """Devices with these names, initialised, each with its own loopback port
    and every one added to every other (a full mesh)."""
    devs = [devices(n) for n in names]
    for d in devs:
        d.init()
        d.port = free_udp_port()
    for x in devs:
        for y in devs:
            if x is not y:
                x.ok("peer", "add", y.id, "--name", y.name, "--addr", y.addr())
    return devs


def share_big_file(devs, tmp_path, size):
    """Each of devs (initialised, peers of each other) gets tmp_path/NAME/docs
    shared with every other as "docs"; the first one's holds big.bin, `size`
    random bytes. Returns ({name: root}, big.bin's SHA-256 hex digest)."""
    roots = {}
    for d in devs:
        roots[d.name] = tmp_path / d.name / "docs"
        roots[d.name].mkdir(parents=True)
    h = hashlib.sha256()
    with open(roots[devs[0].name] / "big.bin", "wb") as f:
        for _ in range(size // (8 << 20)):
            block = os.urandom(8 << 20)
            h.update(block)
            f.write(block)
    for d in devs:
        shares = []
        for o in devs:
            if o is not d:
                shares += ["--share", o.id]
        d.ok("folder", "add", str(roots[d.name]), "--id", "docs", *shares)
    return roots, h.hexdigest()


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


class Device:
    """One landropic home (device) on this machine."""

    def __init__(self, home, name):
        self.home = str(home)
        self.name = name
        self.port = None
        self.pid = None
        self.id = None

    def run(self, *args, timeout=60, input=None, env=None):
        e = dict(os.environ)
        e.pop("LANDROPIC_HOME", None)
        if env:
            e.update(env)
        p = subprocess.run([BIN, "--home", self.home, *args], capture_output=True, text=True,
                           timeout=timeout, input=input, env=e)
        return Result(p)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.rc == 0, f"landropic {' '.join(args)} failed: {r}"
        return r

    def init(self):
        self.id = self.ok("init", "--name", self.name).out.strip()
        return self.id

    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, *extra):
        if self.port is None:
            self.port = free_udp_port()
        r = self.run("daemon", "--listen", self.addr(), "--detach", *extra, timeout=30)
        assert r.rc == 0, f"daemon failed to start: {r}"
        self.pid = self.daemon_pid()
        assert self.pid, "daemon started but no PID in daemon.lock"
        return r

    def daemon_pid(self):
        try:
            with open(os.path.join(self.home, "daemon.lock")) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def alive(self):
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # A zombie is not alive for our purposes.
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def kill(self, sig=signal.SIGKILL):
        if self.pid and self.alive():
            os.kill(self.pid, sig)
            # Wait until the process is gone from /proc, not just a zombie main thread:
            # another thread may still be finishing I/O and the lock is held until then.
            deadline = time.time() + 10
            while os.path.exists(f"/proc/{self.pid}") and time.time() < deadline:
                time.sleep(0.05)
        self.pid = None

    def stop(self):
        if self.pid and self.alive():
            self.run("stop", timeout=40)
            deadline = time.time() + 10
            while self.alive() and time.time() < deadline:
                time.sleep(0.05)
        self.kill()

    def peer_info(self, other):
        for p in self.ok("peers", "--json").json()["peers"]:
            if p["id"] == other.id:
                return p
        return None


def wait_for(pred, timeout=20, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class EventStream:
    """`landropic events --json` of a device, read by a thread, so a test can wait
    for an event that follows a state it saw through another command (events are
    asynchronous: `sync --wait` may return before the `idle` state event is out)."""

    def __init__(self, dev):
        self.proc = subprocess.Popen([BIN, "--home", dev.home, "events", "--json"],
                                     stdout=subprocess.PIPE, text=True)
        self._lock = threading.Lock()
        self._events = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                with self._lock:
                    self._events.append(json.loads(line))

    @property
    def events(self):
        with self._lock:
            return list(self._events)

    def wait(self, pred, timeout=20, what="an event"):
        return wait_for(lambda: pred(self.events), timeout=timeout, what=what)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return self.events


@pytest.fixture
def devices(tmp_path):
    made = []

    def make(name="dev"):
        d = Device(tmp_path / f"home-{name}-{len(made)}", name)
        made.append(d)
        return d

    yield make
    for d in made:
        try:
            d.stop()
        except Exception:
            d.kill()
    # A detached daemon's stderr goes to its log: a sanitizer report there (UBSan's ignore
    # log_path in a combined ASan+UBSan build) fails the test that produced it.
    for d in made:
        try:
            with open(os.path.join(d.home, "landropic.log"), errors="replace") as f:
                log = f.read()
        except OSError:
            continue
        for marker in SANITIZER_MARKERS:
            i = log.find(marker)
            if i >= 0:
                report = log[max(0, i - 200):i + 3000]
                keep_sanitizer_report(d.name, report)
                raise AssertionError(f"{d.name}: sanitizer report in its log:\n{report}")


@pytest.fixture
def device(devices):
    d = devices("solo")
    d.init()
    return d


def tool_bin(name):
    """A tests/tools program built next to BIN (LR_TOOLS_DIR overrides the directory)."""
    return os.path.join(os.environ.get("LR_TOOLS_DIR") or os.path.dirname(BIN), name)
