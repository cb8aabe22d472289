"""prefer:DEVICE with three devices (issue #6): the strategy names the version
that device made, also where it arrives relayed by another. Alice - bob -
carol in a chain (alice and carol never connect), all `prefer:CAROL`.
Carol's edit reaches bob; alice edits the same file while her daemon is
down; when she comes back, carol's version wins on all three (alice's goes
to alice's archive, no conflict copy anywhere) and the trails agree."""
import os
import time

from conftest import free_udp_port, mesh, wait_for
from test_14_strategies import conflict_on, copies, edit

T0 = 1_700_000_000_000_000_000


def content(root, name):
    try:
        return (root / name).read_bytes()
    except FileNotFoundError:
        return None


def chain(devices):
    """Alice - bob - carol: alice and carol are bob's peers, not each other's."""
    a, b, c = devices("alice"), devices("bob"), devices("carol")
    for d in (a, b, c):
        d.init()
        d.port = free_udp_port()
    for x, y in ((a, b), (b, c)):
        x.ok("peer", "add", y.id, "--name", y.name, "--addr", y.addr())
        y.ok("peer", "add", x.id, "--name", x.name, "--addr", x.addr())
    return a, b, c


def mesh_docs(devices, tmp_path):
    """Alice, bob and carol in a full mesh, each sharing its folder "docs"
    (tmp_path/NAME/docs) with both others; daemons not started."""
    devs = mesh(devices, "alice", "bob", "carol")
    roots = [tmp_path / d.name / "docs" for d in devs]
    for d, r in zip(devs, roots):
        r.mkdir(parents=True)
        others = [o.id for o in devs if o is not d]
        d.ok("folder", "add", str(r), "--id", "docs", "--share", others[0], "--share", others[1])
    return devs, roots


def mesh_base(devices, tmp_path):
    """mesh_docs, running, with alice's doc.txt ("base") on all three and
    every device in sync."""
    (a, b, c), (fa, fb, fc) = mesh_docs(devices, tmp_path)
    edit(fa, "doc.txt", b"base\n", T0)
    for d in (a, b, c):
        d.start()
    wait_for(lambda: content(fb, "doc.txt") == b"base\n" and content(fc, "doc.txt") == b"base\n",
             timeout=60, interval=0.2, what="base everywhere")
    for d in (a, b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    return (a, b, c), (fa, fb, fc)


def test_prefer_device_through_a_relay(devices, tmp_path):
    a, b, c = chain(devices)
    roots = {d.name: tmp_path / d.name / "docs" for d in (a, b, c)}
    for r in roots.values():
        r.mkdir(parents=True)
    fa, fb, fc = roots["alice"], roots["bob"], roots["carol"]
    edit(fa, "x.txt", b"original\n", T0)
    pref = f"prefer:{c.id}"
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id, "--conflict", pref)
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id, "--share", c.id,
         "--conflict", pref)
    c.ok("folder", "add", str(fc), "--id", "docs", "--share", b.id, "--conflict", pref)
    for d in (a, b, c):
        d.start()
    wait_for(lambda: content(fc, "x.txt") == b"original\n", timeout=60, interval=0.2,
             what="x.txt relayed to carol")

    # Carol edits (older mtime: the strategy, not the clock, decides); it
    # reaches bob. Alice edits the same file while her daemon is down.
    a.stop()
    edit(fc, "x.txt", b"carol's edit\n", T0 + 10 * 10**9)
    c.ok("scan")
    wait_for(lambda: content(fb, "x.txt") == b"carol's edit\n", timeout=60, interval=0.2,
             what="carol's edit on bob")
    edit(fa, "x.txt", b"alice's newer edit\n", T0 + 500 * 10**9)
    a.start()
    a.ok("scan")

    def settled():
        return all(content(r, "x.txt") == b"carol's edit\n" for r in (fa, fb, fc))
    wait_for(settled, timeout=60, interval=0.2, what="carol's version on all three")
    for d in (a, b, c):
        assert d.ok("sync", "--wait", "--timeout", "60").rc == 0
    assert settled()
    for r in (fa, fb, fc):
        assert copies(r) == [], (r, os.listdir(r))
    # Alice's own version is in her archive, and her trail says why.
    vs = a.ok("versions", "docs", "x.txt", "--json").json()["versions"]
    assert len(b"alice's newer edit\n") in [v["size"] for v in vs], vs
    lst = wait_for(lambda: conflict_on(a, "x.txt"), timeout=30, what="alice's trail for x.txt")
    assert lst[0]["strategy"] == pref and lst[0]["resolution"] == "archive", lst
    assert lst[0]["kept"][0]["device"] == a.id, lst  # alice's version lost


def test_one_losing_version_is_recorded_once(devices, tmp_path):
    """Three devices, offline: alice renames a directory away, bob edits a
    file inside it, carol replaces it with a file. Carol's file loses to
    the directory that comes back and is kept as a copy; the trail listed
    that loss once per winner vector (the directory's vector merged bob's
    between two rounds): two entries with the same copy, on about half the
    runs. No two entries of a trail may name the same copy."""
    (a, b, c), (fa, fb, fc) = mesh_docs(devices, tmp_path)
    (fa / "top" / "mid").mkdir(parents=True)
    (fa / "top" / "mid" / "f").write_text("o\n")
    for d in (a, b, c):
        d.start()
    wait_for(lambda: content(fb, "top/mid/f") == b"o\n" and content(fc, "top/mid/f") == b"o\n",
             timeout=60, interval=0.2, what="top/mid/f everywhere")
    for d in (a, b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
        d.stop()
    os.rename(fa / "top", fa / "top2")
    (fb / "top" / "mid" / "f").write_text("B edit\n")
    (fc / "top" / "mid" / "f").unlink()
    (fc / "top" / "mid").rmdir()
    (fc / "top").rmdir()
    (fc / "top").write_text("C file\n")
    for d in (a, b, c):
        d.start()
    for _ in range(3):
        for d in (a, b, c):
            assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    for d in (a, b, c):
        trail = d.ok("conflicts", "--json").json()["conflicts"]
        seen = [(x["path"], x["type"], x["detail"], x["resolution"], x["kept_path"])
                for x in trail if x["resolution"] == "copy"]
        assert len(seen) == len(set(seen)), (d.name, trail)
        # Carol's file is kept, as a conflict copy, on every device.
        kept = [p for p in (tmp_path / d.name / "docs").iterdir()
                if p.name.startswith("top.sync-conflict-")]
        assert any(p.read_bytes() == b"C file\n" for p in kept), (d.name, kept)


def test_relay_names_a_relayed_losers_author_in_full(devices, tmp_path):
    """Alice - bob - carol in a chain, keep-both. Alice's version reaches
    bob, then carol's newer one does: bob keeps alice's as the copy. Bob's
    trail names alice by her full device ID (she is bob's peer, though not
    a holder of carol's version); it gave the 7-character form."""
    a, b, c = chain(devices)
    fa, fb, fc = (tmp_path / n / "docs" for n in ("alice", "bob", "carol"))
    for r in (fa, fb, fc):
        r.mkdir(parents=True)
    edit(fa, "doc.txt", b"alice's\n", T0)
    edit(fc, "doc.txt", b"carol's\n", T0 + 20 * 10**9)
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id, "--share", c.id)
    c.ok("folder", "add", str(fc), "--id", "docs", "--share", b.id)
    a.start()
    b.start()
    wait_for(lambda: content(fb, "doc.txt") == b"alice's\n", timeout=60, interval=0.2,
             what="alice's version on bob")
    c.start()
    wait_for(lambda: all(content(r, "doc.txt") == b"carol's\n" for r in (fa, fb, fc)),
             timeout=60, interval=0.2, what="carol's version everywhere")
    lst = wait_for(lambda: conflict_on(b, "doc.txt"), timeout=30, what="bob's trail")
    kept = lst[0]["kept"][0]
    assert kept["device"] == a.id, lst
    assert content(fb, kept["path"]) == b"alice's\n", lst


def short7(dev):
    return dev.id.replace("-", "")[:7]


def test_copy_of_a_merged_version_names_its_author(devices, tmp_path):
    """Alice and bob edit apart; bob's newer mtime wins, though alice's edit
    was scanned a second later (her counter is the larger). Alice keeps hers
    as a copy and takes bob's version with the merged vector. Then carol's
    newer edit beats that version: its copy names bob, who wrote it, on
    every device. It named alice (the merged vector's largest counter)."""
    (a, b, c), (fa, fb, fc) = mesh_base(devices, tmp_path)
    for d in (a, b, c):
        d.stop()
    edit(fb, "doc.txt", b"bob's\n", T0 + 10 * 10**9)
    b.ok("scan")
    time.sleep(1.2)  # alice's counter (Unix seconds) above bob's
    edit(fa, "doc.txt", b"alice's\n", T0 + 5 * 10**9)
    a.ok("scan")
    edit(fc, "doc.txt", b"carol's\n", T0 + 20 * 10**9)
    c.ok("scan")
    a.start()
    b.start()
    wait_for(lambda: content(fa, "doc.txt") == b"bob's\n", timeout=60, interval=0.2,
             what="bob's version on alice")
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    c.start()
    wait_for(lambda: all(content(r, "doc.txt") == b"carol's\n" for r in (fa, fb, fc)),
             timeout=60, interval=0.2, what="carol's version everywhere")
    for d in (a, b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    for r in (fa, fb, fc):
        names = {p: content(r, p) for p in copies(r)}
        bobs = [p for p, data in names.items() if data == b"bob's\n"]
        assert bobs and all(short7(b) in p for p in bobs), (r, names)
        alices = [p for p, data in names.items() if data == b"alice's\n"]
        assert alices and all(short7(a) in p for p in alices), (r, names)


def test_winner_editing_again_before_hearing_of_the_resolution(devices, tmp_path):
    """Bob's edit beats alice's; alice resolves it (her copy, bob's version)
    through carol while bob is down, then bob edits again before he hears of
    it. Bob's new version is plainly newer for alice and carol: the one copy
    is alice's. Alice stored bob's version with the merged vector, which his
    next edit did not dominate: alice and carol then made a copy of bob's
    earlier version, and did so for each such edit (black-box: saves every
    10 ms after one conflict made 9-22 copies)."""
    (a, b, c), (fa, fb, fc) = mesh_base(devices, tmp_path)
    a.stop()
    edit(fa, "doc.txt", b"alice's\n", T0 + 5 * 10**9)
    a.ok("scan")
    edit(fb, "doc.txt", b"bob's\n", T0 + 10 * 10**9)
    b.ok("scan")
    wait_for(lambda: content(fc, "doc.txt") == b"bob's\n", timeout=60, interval=0.2,
             what="bob's version on carol")
    for d in (b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    b.stop()
    a.start()
    wait_for(lambda: content(fa, "doc.txt") == b"bob's\n" and len(copies(fc)) == 1,
             timeout=60, interval=0.2, what="alice's copy and bob's version on alice and carol")
    for d in (a, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    edit(fb, "doc.txt", b"bob's again\n", T0 + 20 * 10**9)
    b.start()  # scans at start
    wait_for(lambda: all(content(r, "doc.txt") == b"bob's again\n" for r in (fa, fc)),
             timeout=60, interval=0.2, what="bob's new version on alice and carol")
    for d in (a, b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    for r in (fa, fb, fc):
        names = {p: content(r, p) for p in copies(r)}
        assert list(names.values()) == [b"alice's\n"], (r, names)
        assert content(r, "doc.txt") == b"bob's again\n"
    # Alice and carol decided the conflict; bob never met alice's version
    # (superseded before he was back), so his trail has nothing to show.
    for d in (a, c):
        trail = d.ok("conflicts", "--json").json()["conflicts"]
        assert [(x["path"], x["kept"][0]["device"]) for x in trail] == [("doc.txt", a.id)], trail


def test_resolved_while_a_relay_of_the_loser_is_away(devices, tmp_path):
    """Carol took alice's edit, then went away; bob's newer edit beats it and
    alice resolves the conflict (her copy, bob's version). Alice and bob are
    in sync without carol: her stale record of alice's version is dominated
    by the resolution's vector. (Stored with the winner's vector alone, it
    stayed concurrent: both needed an item no round could apply, until
    carol came back.) Back, carol takes the result as newer: no second copy."""
    (a, b, c), (fa, fb, fc) = mesh_base(devices, tmp_path)
    b.stop()
    edit(fa, "doc.txt", b"alice's\n", T0 + 5 * 10**9)
    a.ok("scan")
    wait_for(lambda: content(fc, "doc.txt") == b"alice's\n", timeout=60, interval=0.2,
             what="alice's version on carol")
    for d in (a, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    c.stop()
    edit(fb, "doc.txt", b"bob's\n", T0 + 10 * 10**9)
    b.start()  # scans at start
    wait_for(lambda: content(fa, "doc.txt") == b"bob's\n" and len(copies(fb)) == 1, timeout=60,
             interval=0.2, what="the conflict resolved on alice and bob")
    for d in (a, b):
        assert d.run("sync", "--wait", "--timeout", "30").rc == 0, d.name
        st = d.ok("status", "--json").json()["folders"][0]
        assert st["in_sync"] and st["need_files"] == 0, (d.name, st)
    c.start()
    wait_for(lambda: content(fc, "doc.txt") == b"bob's\n", timeout=60, interval=0.2,
             what="bob's version on carol")
    for d in (a, b, c):
        assert d.run("sync", "--wait", "--timeout", "60").rc == 0
    for r in (fa, fb, fc):
        names = {p: content(r, p) for p in copies(r)}
        assert list(names.values()) == [b"alice's\n"], (r, names)
