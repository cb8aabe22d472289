#!/usr/bin/env python3
"""efficiency_syncthing.py - issue #5's efficiency scenarios against Syncthing,
the same changes bench/efficiency.sh makes to landropic (same sizes, seeds
and offsets), driven through bench/syncthing.py.

    bench/efficiency_syncthing.py [SCENARIO...]   (default: overwrite insert rename burst latency)

Scenarios (each starts two fresh Syncthing instances, A has the data, B pulls
it; nothing is measured until B is in sync and the counters are quiet):
  overwrite  1 MiB overwritten at offset 537 012 345 of a 1 GiB random file: bytes
  insert     100 bytes inserted at the start of a 100 MiB random file, 5 files: bytes
  rename     a directory of 1000 files of 1-64 KiB renamed: bytes
  burst      4 KiB overwritten in each of 200 files of 1-64 KiB: last write ->
             every file right on B, live (RUNS runs, default 5)
  latency    a ~1 KiB file saved (temp + rename) -> same content on B, live
             (SAMPLES samples, default 20, with fsWatcherDelayS=1; then
             SAMPLES_DEFAULT samples, default 3, with Syncthing's default 10)

Bytes: "payload" is A's BEP counters (REST /rest/system/connections,
inBytesTotal + outBytesTotal: messages after Syncthing's own compression, no
TLS/TCP), "lo" the loopback tx_bytes: exact when run as root, because the
script then re-executes itself in a private network namespace (unshare --net)
where only these two instances talk. The window runs from just before the
change until B's copy is right, B's status is idle with nothing needed, A
sees B at 100 % and the counters have not moved for 2 s (so B's index update
back to A counts, as in efficiency.sh).
Times: a poller compares B's files with what was written (stat first, then
content), every 5 ms. Change detection is Syncthing's own watcher (inotify)
with fsWatcherDelayS as stated; no scan is requested through REST.
Python 3 standard library only; all waits bounded; instances stopped by PID.
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import syncthing as st  # noqa: E402

NETNS = os.environ.get("LR_ST_NETNS") == "1"


def lo_bytes():
    if not NETNS:
        return 0
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[8])
    return 0


def kib(b):
    return f"{b / 1024:.1f} KiB"


def row(label, payload, lo):
    los = f"lo {lo:12d} B ({kib(lo)})" if NETNS else "lo n/a"
    print(f"  {label:34s} payload {payload:12d} B ({kib(payload)})  {los}", flush=True)


def gen(d, n, lo, hi, seed):
    r = random.Random(seed)
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
            f.write(r.randbytes(r.randint(lo, hi)))


def urandom_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n


def files_of(d):
    out = []
    for dp, dn, fn in os.walk(d):
        dn.sort()
        if ".stfolder" in dn:
            dn.remove(".stfolder")
        out += [os.path.join(dp, x) for x in sorted(fn)]
    return out


def same_tree(a, b):
    return subprocess.run(["diff", "-r", "-q", "--exclude=.stfolder", a, b],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def poll_until(expect, deadline, gone=()):
    """expect: {path_on_B: (bytes, mtime_ns on A)}; gone: paths that must not
    exist. Returns the time all matched, or None. Syncthing copies the mtime,
    so a file is read only once its stat matches (every 20th round reads all
    in case it does not)."""
    left = dict(expect)
    rounds = 0
    while time.time() < deadline:
        rounds += 1
        for p in list(left):
            data, mt = left[p]
            try:
                s = os.stat(p)
                if rounds % 20 and (s.st_size != len(data) or s.st_mtime_ns != mt):
                    continue
                with open(p, "rb") as f:
                    if f.read() == data:
                        del left[p]
            except OSError:
                pass
        if not left and not any(os.path.lexists(g) for g in gone):
            return time.time()
        time.sleep(0.005)
    return None


def expect_of(src_path, dst_path):
    with open(src_path, "rb") as f:
        return dst_path, (f.read(), os.fstat(f.fileno()).st_mtime_ns)


def stat_match(pairs):
    """Whether each (a, b) pair has the same size and mtime (big files: no
    content read per poll; the content is compared once at the end)."""
    for a, b in pairs:
        try:
            sa, sb = os.stat(a), os.stat(b)
        except OSError:
            return False
        if sa.st_size != sb.st_size or sa.st_mtime_ns != sb.st_mtime_ns:
            return False
    return True


class Bench:
    def __init__(self, work, delay=1):
        self.work = work
        self.delay = delay
        self.pair = None

    def up(self, src, dst):
        files, nbytes = st.tree_stats(src)
        self.pair = st.Pair(os.path.join(self.work, "homes"), src, dst, self.delay)
        t0 = time.time()
        self.pair.start()
        self.pair.wait_connected()
        self.pair.wait_b_in_sync(files, nbytes)
        self.pair.settle()
        print(f"  initial sync {time.time() - t0:.1f} s (incl. 2 s settle)", flush=True)

    def down(self):
        if self.pair:
            self.pair.stop()
            self.pair = None
        shutil.rmtree(os.path.join(self.work, "homes"), ignore_errors=True)

    def begin(self):
        self.b0 = self.pair.a.bytes_total()
        self.lo0 = lo_bytes()

    def end(self, src, dst, check):
        """Wait for B: check() true, B idle and complete; settle. Returns
        (payload, lo, a->b, b->a)."""
        dl = time.time() + 600
        files, nbytes = st.tree_stats(src)
        while time.time() < dl:
            if check() and self.pair.b_in_sync(files, nbytes):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("B not in sync after 600 s")
        if not same_tree(src, dst):
            raise RuntimeError("B differs after the change")
        self.pair.settle()
        ai, ao = self.pair.a.bytes_total()
        bi0, bo0 = self.b0
        return ai + ao - bi0 - bo0, lo_bytes() - self.lo0, ao - bo0, ai - bi0


def scen_overwrite(work):
    s, d = os.path.join(work, "s"), os.path.join(work, "d")
    os.makedirs(s)
    os.makedirs(d)
    big = os.path.join(s, "big.bin")
    urandom_file(big, 1 << 30)
    off = 537 * 1000 * 1000 + 12345
    print(f"== overwrite: 1 MiB at offset {off} of a 1 GiB file (target <= 1.41 MiB = 1478492 B)", flush=True)
    b = Bench(work)
    try:
        b.up(s, d)
        b.begin()
        with open(big, "r+b") as f:
            f.seek(off)
            f.write(os.urandom(1 << 20))
        other = os.path.join(d, "big.bin")
        payload, lo, ab, ba = b.end(s, d, lambda: stat_match([(big, other)]))
        row(f"syncthing A->B / B->A {ab} / {ba}", payload, lo)
    finally:
        b.down()
        shutil.rmtree(s)
        shutil.rmtree(d)


def scen_insert(work):
    s, d = os.path.join(work, "s"), os.path.join(work, "d")
    os.makedirs(s)
    os.makedirs(d)
    for i in range(1, 6):
        urandom_file(os.path.join(s, f"f{i}.bin"), 100 << 20)
    print("== insert: 100 bytes at the start of a 100 MiB random file, 5 files (target <= 110 KiB = 112640 B)", flush=True)
    b = Bench(work)
    pays, los = [], []
    try:
        b.up(s, d)
        for i in range(1, 6):
            p = os.path.join(s, f"f{i}.bin")
            b.begin()
            with open(p, "r+b") as f:
                data = f.read()
                f.seek(0)
                f.write(os.urandom(100) + data)
            q = os.path.join(d, f"f{i}.bin")
            payload, lo, ab, ba = b.end(s, d, lambda: stat_match([(p, q)]))
            row(f"file {i} syncthing {ab} / {ba}", payload, lo)
            pays.append(payload)
            los.append(lo)
        row("median syncthing", int(statistics.median(pays)), int(statistics.median(los)))
    finally:
        b.down()
        shutil.rmtree(s)
        shutil.rmtree(d)


def scen_rename(work):
    s, d = os.path.join(work, "s"), os.path.join(work, "d")
    os.makedirs(d)
    gen(os.path.join(s, "dir0"), 1000, 1024, 65536, 31)
    print("== rename: a directory of 1000 files of 1-64 KiB renamed (target <= 240 KiB = 245760 B)", flush=True)
    b = Bench(work)
    try:
        b.up(s, d)
        b.begin()
        os.rename(os.path.join(s, "dir0"), os.path.join(s, "dir1"))
        payload, lo, ab, ba = b.end(
            s, d, lambda: not os.path.lexists(os.path.join(d, "dir0")) and os.path.isdir(os.path.join(d, "dir1")))
        row(f"syncthing A->B / B->A {ab} / {ba}", payload, lo)
    finally:
        b.down()
        shutil.rmtree(s)
        shutil.rmtree(d)


def scen_burst(work, runs):
    s, d = os.path.join(work, "s"), os.path.join(work, "d")
    os.makedirs(os.path.join(d, "burst"))
    gen(os.path.join(s, "burst"), 200, 1024, 65536, 41)
    print(f"== burst: 4 KiB overwritten in each of 200 files of 1-64 KiB, last write -> in sync on B, "
          f"live, fsWatcherDelayS=1 (target <= 0.4 s); {runs} runs", flush=True)
    b = Bench(work)
    ts, pays = [], []
    try:
        b.up(s, d)
        for i in range(1, runs + 1):
            b.begin()
            r = random.Random(i)
            paths = files_of(os.path.join(s, "burst"))
            for p in paths:
                with open(p, "r+b") as f:
                    size = os.fstat(f.fileno()).st_size
                    n = min(4096, size)
                    f.seek(r.randint(0, size - n))
                    f.write(os.urandom(n))
            t_last = time.time()
            expect = dict(expect_of(p, os.path.join(d, os.path.relpath(p, s))) for p in paths)
            t = poll_until(expect, t_last + 120)
            if t is None:
                raise RuntimeError("burst: B not in sync after 120 s")
            payload, lo, ab, ba = b.end(s, d, lambda: True)
            print(f"  run {i}  syncthing {t - t_last:7.3f} s  payload {kib(payload)}", flush=True)
            ts.append(t - t_last)
            pays.append(payload)
        print(f"  median   syncthing {statistics.median(ts):7.3f} s  payload {kib(statistics.median(pays))}", flush=True)
    finally:
        b.down()
        shutil.rmtree(s)
        shutil.rmtree(d)


def latency_samples(s, d, samples, gap):
    out = []
    for i in range(samples):
        body = (f"sample {i} {time.time()} ".encode() + os.urandom(8).hex().encode()) * 40
        tmp = os.path.join(s, ".note.txt.tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.rename(tmp, os.path.join(s, "note.txt"))
        t0 = time.time()
        k, v = expect_of(os.path.join(s, "note.txt"), os.path.join(d, "note.txt"))
        t = poll_until({k: v}, t0 + 60)
        out.append(t - t0 if t else float("inf"))
        time.sleep(gap)
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(len(xs) * q + 0.5) - 1))]


def scen_latency(work, samples, samples_default):
    for delay, n in ((1, samples), (10, samples_default)):
        if n <= 0:
            continue
        s, d = os.path.join(work, "s"), os.path.join(work, "d")
        os.makedirs(s)
        os.makedirs(d)
        with open(os.path.join(s, "note.txt"), "w") as f:
            f.write("seed\n")
        print(f"== latency: a ~1 KiB file saved (temp + rename) -> same content on B, live, "
              f"fsWatcherDelayS={delay}; {n} samples 1 s apart (target p50 < 1 s)", flush=True)
        b = Bench(work, delay)
        try:
            b.up(s, d)
            out = latency_samples(s, d, n, 1.0)
            print("  samples (s): " + " ".join(f"{x:.4f}" for x in out))
            print(f"  p50 {pct(out, 0.5):.3f} s  p90 {pct(out, 0.9):.3f} s  min {min(out):.3f} s  "
                  f"max {max(out):.3f} s", flush=True)
        finally:
            b.down()
            shutil.rmtree(s)
            shutil.rmtree(d)


def main(argv):
    scen = argv or ["overwrite", "insert", "rename", "burst", "latency"]
    work = tempfile.mkdtemp(prefix="lr-steff.")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    ver = subprocess.run(["syncthing", "--version"], capture_output=True, text=True).stdout.split()[:2]
    print(f"efficiency_syncthing.py: {time.strftime('%F %T', time.gmtime())} UTC; {os.cpu_count()} CPUs; "
          f"load {load}; {' '.join(ver)}; netns: {'yes' if NETNS else 'no (lo bytes not measured)'}", flush=True)
    try:
        for sc in scen:
            if sc == "overwrite":
                scen_overwrite(work)
            elif sc == "insert":
                scen_insert(work)
            elif sc == "rename":
                scen_rename(work)
            elif sc == "burst":
                scen_burst(work, int(os.environ.get("RUNS", "5")))
            elif sc == "latency":
                scen_latency(work, int(os.environ.get("SAMPLES", "20")),
                             int(os.environ.get("SAMPLES_DEFAULT", "3")))
            else:
                print(f"unknown scenario {sc}", file=sys.stderr)
                return 2
            with open("/proc/loadavg") as f:
                print(f"  (load {' '.join(f.read().split()[:3])})", flush=True)
    finally:
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if not NETNS and os.geteuid() == 0 and shutil.which("unshare") and os.environ.get("LR_ST_NONETNS") != "1":
        os.environ["LR_ST_NETNS"] = "1"
        me = os.path.abspath(__file__)
        os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c",
                              'ip link set lo up && exec python3 "$0" "$@"', me] + sys.argv[1:])
    sys.exit(main(sys.argv[1:]))
