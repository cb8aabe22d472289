"""recon.py - reconciliation without history (docs/protocol.md §6.11) on a
pre-seeded tree: two devices hold identical copies (cp -a) of an N-file
tree, each indexed before they meet; how many index bytes do they exchange
until both are in sync, against the full index the same device sends to a
third one that joins empty (what both directions would cost without
summaries). Not a test: run on demand, e.g.
    LANDROPIC_BIN=build/landropic /usr/bin/python3 bench/recon.py 100000 3
(N files, runs; prints one line per run and the medians).
"""
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import conftest  # noqa: E402
from conftest import Device, free_udp_port  # noqa: E402


def make_tree(root, n, seed):
    rnd = random.Random(seed)
    for i in range(n):
        d = os.path.join(root, f"d{i % 97:02d}", f"s{(i // 97) % 11}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file-{i:06d}.dat"), "wb") as f:
            f.write(rnd.randbytes(rnd.randint(10, 2000)))


def idx(dev, other):
    return (dev.peer_info(other) or {}).get("index", {})


def settled(*devs):
    return all(d.run("sync", "--wait", "--timeout", "600", timeout=700).rc == 0 for d in devs)


def one_run(n, seed):
    t = tempfile.mkdtemp(prefix="lr-recon-")
    devs = []
    try:
        fa, fb, fc = (os.path.join(t, x, "docs") for x in "ABC")
        os.makedirs(fa)
        make_tree(fa, n, seed)
        shutil.copytree(fa, fb, copy_function=shutil.copy2)
        os.makedirs(fc)
        a, b, c = (Device(os.path.join(t, "h" + x), x) for x in "abc")
        devs = [a, b, c]
        for d in devs:
            d.init()
            d.port = free_udp_port()
        for x in devs:
            for y in devs:
                if x is not y:
                    x.ok("peer", "add", y.id, "--addr", y.addr())
        for d, f, others in ((a, fa, (b, c)), (b, fb, (a,)), (c, fc, (a,))):
            args = ["folder", "add", f, "--id", "docs"]
            for o in others:
                args += ["--share", o.id]
            d.ok(*args)
            d.ok("scan", timeout=900)
        t0 = time.time()
        a.start()
        b.start()
        conftest.wait_for(lambda: settled(a, b), timeout=900, interval=0.5, what="A and B")
        agree_s = time.time() - t0
        ab = idx(a, b)
        recon = ab["bytes_sent"] + ab["bytes_received"]
        c.start()
        conftest.wait_for(lambda: settled(a, c), timeout=1800, interval=1, what="A and C")
        full = idx(a, c)["bytes_sent"]
        conflicts = [p for p in os.listdir(fa) if "sync-conflict" in p]
        return recon, full, agree_s, ab["summaries_sent"], len(conflicts)
    finally:
        for d in devs:
            d.stop()
        shutil.rmtree(t, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ratios, agrees = [], []
    for r in range(runs):
        recon, full, agree_s, nsum, ncon = one_run(n, seed=r + 1)
        ratio = recon / full
        ratios.append(ratio)
        agrees.append(agree_s)
        print(f"run {r + 1}: {n} files: reconciled both ways {recon} B, one full index {full} B, "
              f"ratio {ratio * 100:.2f} %, in sync after {agree_s:.1f} s, summaries sent {nsum}, "
              f"conflict copies {ncon}", flush=True)
    print(f"median: ratio {statistics.median(ratios) * 100:.2f} % of one full index, "
          f"in sync after {statistics.median(agrees):.1f} s")


if __name__ == "__main__":
    main()
