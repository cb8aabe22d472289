#!/usr/bin/env python3
"""syncthing.py - drive two Syncthing instances on 127.0.0.1 for the benchmarks.

    bench/syncthing.py initial SRC DST [--cold] [--delay S]
        Fresh homes for A (sharing SRC) and B (sharing the empty DST); start
        both, time from starting them until B's REST status says every file of
        SRC is in sync (files and bytes match SRC, nothing needed, idle).
        Prints the seconds (one line) on stdout. --cold: sync + drop_caches
        (when root) just before starting, as bench/sync.sh does for the others.
Also imported by bench/efficiency_syncthing.py (issue #5's efficiency
scenarios against Syncthing).

What the driver sets up (everything else is Syncthing 1.19's default):
  * `syncthing generate --no-default-folder --skip-port-probing` per home,
    device ID from `syncthing serve --device-id`;
  * config.xml edited before the first start: listen tcp://127.0.0.1:PORT,
    GUI/REST on 127.0.0.1:PORT with a random API key, global and local
    discovery, relays, NAT, usage and crash reporting, upgrades and the
    browser off; setLowPriority off (Syncthing renices itself by default,
    which would handicap it against the other tools); the two devices know
    each other with a static tcp://127.0.0.1 address; one folder "bench",
    send-receive, fsWatcher on, fsWatcherDelayS as given (default 1, the
    smallest 1.19 accepts; Syncthing's own default is 10), rescanIntervalS
    3600, minDiskFree 0;
  * processes started with --no-restart (no monitor process: the PID we hold
    is Syncthing itself), STNOUPGRADE=1, stopped by that PID (SIGTERM, then
    SIGKILL after 10 s), never by name.
All waits are bounded. Python 3 standard library only.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

FOLDER = "bench"


def free_tcp():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cold():
    os.sync()
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError:
            pass


def tree_stats(d):
    """(files, bytes) of a tree as Syncthing's folder status counts them:
    its marker excluded, a directory counts 128 bytes."""
    n = b = 0
    for dp, dn, fn in os.walk(d):
        if dp == d and ".stfolder" in dn:
            dn.remove(".stfolder")
        b += 128 * len(dn)
        for x in fn:
            st = os.lstat(os.path.join(dp, x))
            n += 1
            b += st.st_size
    return n, b


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def wait_gone(pid, timeout):
    dl = time.time() + timeout
    while time.time() < dl:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class Instance:
    def __init__(self, home, name):
        self.home = home
        self.name = name
        self.port = free_tcp()
        self.gui = free_tcp()
        self.key = secrets.token_hex(16)
        self.proc = None
        self.log = None
        os.makedirs(home, exist_ok=True)
        subprocess.run(["syncthing", "generate", "--home", home, "--no-default-folder",
                        "--skip-port-probing"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        out = subprocess.run(["syncthing", "serve", "--home", home, "--device-id"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        self.id = out.strip().splitlines()[-1].strip()

    def configure(self, peer, path, delay_s=1, rescan_s=3600):
        cfgp = os.path.join(self.home, "config.xml")
        tree = ET.parse(cfgp)
        root = tree.getroot()
        opts = root.find("options")
        settings = {
            "listenAddress": f"tcp://127.0.0.1:{self.port}",
            "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false",
            "relaysEnabled": "false",
            "natEnabled": "false",
            "urAccepted": "-1",
            "autoUpgradeIntervalH": "0",
            "startBrowser": "false",
            "crashReportingEnabled": "false",
            "setLowPriority": "false",
            "announceLANAddresses": "false",
        }
        for k, v in settings.items():
            for e in opts.findall(k):
                opts.remove(e)
            ET.SubElement(opts, k).text = v
        gui = root.find("gui")
        gui.find("address").text = f"127.0.0.1:{self.gui}"
        gui.find("apikey").text = self.key
        # Our own device and the peer, with static loopback addresses.
        for dev in root.findall("device"):
            root.remove(dev)
        template = root.find("defaults/device")
        for did, name, port in ((self.id, self.name, self.port), (peer.id, peer.name, peer.port)):
            dev = ET.fromstring(ET.tostring(template))
            dev.set("id", did)
            dev.set("name", name)
            dev.find("address").text = f"tcp://127.0.0.1:{port}"
            root.insert(0, dev)
        folder = ET.fromstring(ET.tostring(root.find("defaults/folder")))
        folder.set("id", FOLDER)
        folder.set("label", FOLDER)
        folder.set("path", path)
        folder.set("fsWatcherEnabled", "true")
        folder.set("fsWatcherDelayS", str(delay_s))
        folder.set("rescanIntervalS", str(rescan_s))
        for dev in folder.findall("device"):
            folder.remove(dev)
        for did in (self.id, peer.id):
            d = ET.SubElement(folder, "device", {"id": did, "introducedBy": ""})
            ET.SubElement(d, "encryptionPassword").text = ""
        folder.find("minDiskFree").text = "0"
        root.insert(0, folder)
        tree.write(cfgp)
        os.makedirs(os.path.join(path, ".stfolder"), exist_ok=True)

    def start(self):
        env = dict(os.environ, STNOUPGRADE="1", STNORESTART="1", STNODEFAULTFOLDER="1")
        self.log = open(os.path.join(self.home, "stdout.log"), "wb")
        self.proc = subprocess.Popen(["syncthing", "serve", "--home", self.home, "--no-browser",
                                      "--no-restart", "--no-upgrade", "--logflags=7"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.proc is None:
            return
        p = self.proc
        self.proc = None
        # Syncthing 1.19 still runs a monitor parent with --no-restart; it
        # forwards SIGTERM to its child (our PID's child, noted first).
        kids = children(p.pid)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for k in kids:
            if not wait_gone(k, 10):
                os.kill(k, signal.SIGKILL)
        self.log.close()

    def rest(self, path, method="GET", timeout=10):
        req = urllib.request.Request(f"http://127.0.0.1:{self.gui}{path}", method=method,
                                     headers={"X-API-Key": self.key})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def try_rest(self, path):
        try:
            return self.rest(path)
        except (OSError, ValueError):
            return None

    def wait_up(self, deadline):
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"syncthing {self.name} exited: see {self.home}/stdout.log")
            if self.try_rest("/rest/system/ping"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"syncthing {self.name}: REST not up")

    def connected(self, peer):
        c = self.try_rest("/rest/system/connections")
        return bool(c and c["connections"].get(peer.id, {}).get("connected"))

    def bytes_total(self):
        """BEP bytes on all connections (Syncthing counts after its own
        compression, under TLS): (in, out)."""
        t = self.rest("/rest/system/connections")["total"]
        return t["inBytesTotal"], t["outBytesTotal"]

    def status(self):
        return self.try_rest(f"/rest/db/status?folder={FOLDER}")

    def scan(self):
        self.rest(f"/rest/db/scan?folder={FOLDER}", method="POST", timeout=60)


class Pair:
    """A (source) and B (destination), configured, not started."""

    def __init__(self, work, src, dst, delay_s=1):
        self.a = Instance(os.path.join(work, "st-a"), "st-src")
        self.b = Instance(os.path.join(work, "st-b"), "st-dst")
        self.a.configure(self.b, src, delay_s)
        self.b.configure(self.a, dst, delay_s)
        self.src, self.dst = src, dst

    def start(self, timeout=120):
        self.a.start()
        self.b.start()
        dl = time.time() + timeout
        self.a.wait_up(dl)
        self.b.wait_up(dl)

    def wait_connected(self, timeout=120):
        dl = time.time() + timeout
        while time.time() < dl:
            if self.a.connected(self.b) and self.b.connected(self.a):
                return
            time.sleep(0.05)
        raise RuntimeError("syncthing: devices did not connect")

    def b_in_sync(self, files, nbytes):
        s = self.b.status()
        if not s:
            return False
        return (s.get("state") == "idle" and s.get("needTotalItems", 1) == 0
                and s.get("globalFiles") == files and s.get("globalBytes") == nbytes
                and s.get("inSyncFiles") == files and s.get("inSyncBytes") == nbytes
                and s.get("localFiles") == files and s.get("localBytes") == nbytes)

    def wait_b_in_sync(self, files, nbytes, timeout=3600, interval=0.05):
        dl = time.time() + timeout
        while time.time() < dl:
            if self.b_in_sync(files, nbytes):
                return time.time()
            for inst in (self.a, self.b):
                if inst.proc.poll() is not None:
                    raise RuntimeError(f"syncthing {inst.name} exited: see {inst.home}/stdout.log")
            time.sleep(interval)
        raise RuntimeError(f"syncthing: B not in sync after {timeout} s: {self.b.status()}")

    def a_sees_b_complete(self):
        c = self.a.try_rest(f"/rest/db/completion?folder={FOLDER}&device={self.b.id}")
        return bool(c and c.get("needItems", 1) == 0 and c.get("needDeletes", 1) == 0
                    and c.get("completion") == 100)

    def bytes_total(self):
        ai, ao = self.a.bytes_total()
        return ai + ao

    def settle(self, quiet=2.0, timeout=120):
        """Until A's byte counters have not moved for `quiet` seconds and A
        sees B complete (B's index update has arrived)."""
        dl = time.time() + timeout
        prev = self.bytes_total()
        since = time.time()
        while time.time() < dl:
            time.sleep(0.25)
            cur = self.bytes_total()
            if cur != prev:
                prev, since = cur, time.time()
            elif time.time() - since >= quiet and self.a_sees_b_complete():
                return
        print("warning: counters still moving after settle timeout", file=sys.stderr)

    def stop(self):
        self.a.stop()
        self.b.stop()


def initial(src, dst, do_cold, delay_s):
    files, nbytes = tree_stats(src)
    work = tempfile.mkdtemp(prefix="lr-stbench.")
    pair = None
    try:
        pair = Pair(work, src, dst, delay_s)
        if do_cold:
            cold()
        t0 = time.time()
        pair.start()
        t1 = pair.wait_b_in_sync(files, nbytes)
        print(f"{t1 - t0:.3f}")
    finally:
        if pair:
            pair.stop()
        shutil.rmtree(work, ignore_errors=True)
        for d in (src, dst):
            shutil.rmtree(os.path.join(d, ".stfolder"), ignore_errors=True)


def main(argv):
    if len(argv) >= 3 and argv[0] == "initial":
        do_cold = "--cold" in argv
        delay = 1
        if "--delay" in argv:
            delay = int(argv[argv.index("--delay") + 1])
        initial(argv[1], argv[2], do_cold, delay)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
