"""Reconciliation without history (docs/protocol.md §6.11) between real
daemons: devices pre-seeded with copies of one tree, or one whose database
was reset, agree through a SUMMARY and the entries that differ instead of
full indexes; no conflict copies appear, nothing is lost, and later edits on
either side propagate as plain updates (the vectors were merged alike on
both sides)."""
import os
import random
import shutil

from conftest import free_udp_port, wait_for


def make_tree(root, n, seed):
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        d = root / f"d{i % 23:02d}" / f"s{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(rnd.randbytes(rnd.randint(50, 3000)))
    os.symlink("d00/s0/f00000.txt", root / "link")


def snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [x for x in dirnames if x != ".landropic"]
        for name in filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read())
    return out


def conflict_copies(root):
    return [k for k in snapshot(root) if ".sync-conflict-" in k]


def idx(dev, other):
    return (dev.peer_info(other) or {}).get("index", {})


def settled(*devs):
    return all(d.run("sync", "--wait", "--timeout", "30").rc == 0 for d in devs)


def make_devices(devices, names):
    devs = []
    for n in names:
        d = devices(n)
        d.init()
        d.port = free_udp_port()
        devs.append(d)
    for x in devs:
        for y in devs:
            if x is not y:
                x.ok("peer", "add", y.id, "--name", y.name, "--addr", y.addr())
    return devs


def add_folder(dev, path, others):
    args = ["folder", "add", str(path), "--id", "docs"]
    for o in others:
        args += ["--share", o.id]
    dev.ok(*args)
    # Indexed before any peer is seen, as a pre-seeded device would be.
    dev.ok("scan")


def edit_and_expect(src, dst, rel, data):
    (src / rel).write_bytes(data)
    wait_for(lambda: (dst / rel).exists() and (dst / rel).read_bytes() == data, timeout=60,
             interval=0.2, what=f"{rel} from {src} on {dst}")


def test_preseeded_trees_agree_through_a_summary(devices, tmp_path):
    a, b, c = make_devices(devices, ["alice", "bob", "carol"])
    fa, fb, fc = tmp_path / "A" / "docs", tmp_path / "B" / "docs", tmp_path / "C" / "docs"
    make_tree(fa, 1500, seed=7)
    # The same tree, with the same mtimes and modes (cp -a).
    shutil.copytree(fa, fb, symlinks=True, copy_function=shutil.copy2)
    add_folder(a, fa, [b, c])
    add_folder(b, fb, [a])
    a.start()
    b.start()
    wait_for(lambda: settled(a, b), timeout=90, what="A and B settled")
    assert conflict_copies(fa) == [] and conflict_copies(fb) == []
    assert snapshot(fa) == snapshot(fb)
    ab, ba = idx(a, b), idx(b, a)
    assert ab["summaries_sent"] >= 1 and ab["summaries_received"] >= 1, ab
    recon_bytes = ab["bytes_sent"] + ab["bytes_received"]

    # Carol joins with an empty folder: a summary would not help (she has no
    # index to compare), so A sends her its full index: the reference.
    fc.mkdir(parents=True)
    add_folder(c, fc, [a])
    c.start()
    wait_for(lambda: snapshot(fc) == snapshot(fa), timeout=120, interval=0.3, what="C has A's tree")
    wait_for(lambda: settled(a, c), timeout=60, what="A and C settled")
    ac = idx(a, c)
    assert ac["summaries_sent"] == 0, ac
    full_bytes = ac["bytes_sent"]
    print(f"index bytes A<->B reconciled {recon_bytes}, A->C full {full_bytes}")
    # Both directions of the reconciliation under a tenth of one full index.
    assert recon_bytes * 10 < full_bytes, (recon_bytes, full_bytes, ab, ba)

    # Later edits are plain updates everywhere: no false conflict from the
    # merged vectors, in either direction, nor on the third device.
    edit_and_expect(fb, fa, "d01/s1/f00001.txt", b"bob's edit\n")
    wait_for(lambda: (fc / "d01/s1/f00001.txt").read_bytes() == b"bob's edit\n", timeout=60,
             what="bob's edit on C")
    edit_and_expect(fa, fb, "d02/s2/f00002.txt", b"alice's edit\n")
    edit_and_expect(fc, fb, "d03/s3/f00003.txt", b"carol's edit\n")
    wait_for(lambda: settled(a, b, c), timeout=90, what="all settled")
    assert conflict_copies(fa) == [] and conflict_copies(fb) == [] and conflict_copies(fc) == []
    assert snapshot(fa) == snapshot(fb) == snapshot(fc)
    assert a.ok("conflicts", "--json").json()["conflicts"] == []
    assert b.ok("conflicts", "--json").json()["conflicts"] == []


def test_preseeded_trees_with_differences_converge(devices, tmp_path):
    a, b = make_devices(devices, ["alice", "bob"])
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    make_tree(fa, 800, seed=11)
    shutil.copytree(fa, fb, symlinks=True, copy_function=shutil.copy2)
    # Differences in a few buckets: files only on one side, a directory only
    # on A, a file B lacks, and one whose mode differs (a metadata conflict).
    (fa / "only-a").mkdir()
    (fa / "only-a" / "x.txt").write_bytes(b"from A\n")
    (fb / "only-b.txt").write_bytes(b"from B\n")
    (fb / "d04" / "s4" / "f00004.txt").unlink()
    os.chmod(fb / "d05" / "s0" / "f00005.txt", 0o600)
    add_folder(a, fa, [b])
    add_folder(b, fb, [a])
    a.start()
    b.start()
    wait_for(lambda: (fa / "only-b.txt").exists() and (fb / "only-a" / "x.txt").exists(),
             timeout=90, what="each side's extra files on the other")
    wait_for(lambda: settled(a, b), timeout=90, what="settled")
    assert idx(a, b)["summaries_sent"] >= 1 and idx(b, a)["summaries_sent"] >= 1
    # The file B lacked is back on B: deleting it before B ever synced is no
    # delete anyone announced.
    assert (fb / "d04" / "s4" / "f00004.txt").exists()
    assert conflict_copies(fa) == [] and conflict_copies(fb) == []
    wait_for(lambda: snapshot(fa) == snapshot(fb), timeout=60, what="identical trees")
    ma = os.stat(fa / "d05" / "s0" / "f00005.txt").st_mode & 0o777
    mb = os.stat(fb / "d05" / "s0" / "f00005.txt").st_mode & 0o777
    assert ma == mb, (oct(ma), oct(mb))
    edit_and_expect(fa, fb, "only-b.txt", b"A edits B's file\n")
    edit_and_expect(fb, fa, "only-a/x.txt", b"B edits A's file\n")
    assert conflict_copies(fa) == [] and conflict_copies(fb) == []


def test_reset_database_reconciles(devices, tmp_path):
    a, b = make_devices(devices, ["alice", "bob"])
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    make_tree(fa, 600, seed=3)
    fb.mkdir(parents=True)
    add_folder(a, fa, [b])
    add_folder(b, fb, [a])
    a.start()
    b.start()
    wait_for(lambda: snapshot(fb) == snapshot(fa), timeout=120, interval=0.3, what="B has A's tree")
    wait_for(lambda: settled(a, b), timeout=60, what="settled")
    # B loses its database (a new index ID): it rescans what it has and
    # agrees with A through summaries, without conflicts.
    b.stop()
    for name in os.listdir(b.home):
        if name.startswith("index.db"):
            os.unlink(os.path.join(b.home, name))
    b.ok("scan")
    before = idx(a, b).get("summaries_received", 0)
    b.start()
    wait_for(lambda: idx(a, b).get("summaries_received", 0) > before and settled(a, b),
             timeout=90, what="reconciled after the reset")
    assert conflict_copies(fa) == [] and conflict_copies(fb) == []
    edit_and_expect(fa, fb, "d06/s1/f00006.txt", b"after the reset\n")
    edit_and_expect(fb, fa, "d07/s2/f00007.txt", b"and back\n")
    wait_for(lambda: settled(a, b), timeout=60, what="settled again")
    assert conflict_copies(fa) == [] and conflict_copies(fb) == []
    assert snapshot(fa) == snapshot(fb)
