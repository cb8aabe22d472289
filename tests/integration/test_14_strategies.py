"""Conflict resolution strategies (issue #6, docs/conflicts.md) with real
daemons: stop one, edit both, restart. `newest` keeps the newer version on
both devices and archives the older (no conflict copy); `prefer:ID` picks
that device's version on both even when it is the older; both devices
`prefer-local` name different winners, so keep-both makes a copy; the audit
trail shows each device's strategy and the resolution. Strategies are set
with `folder add --conflict` (daemon down) and `folder set` (through the
running daemon, which re-announces them in FOLDERS)."""
import os

from conftest import wait_for
from test_04_sync import setup_pair, synced

T0 = 1_700_000_000_000_000_000


def conflicts(dev):
    return dev.ok("conflicts", "--json").json()["conflicts"]


def conflict_on(dev, path):
    return [c for c in conflicts(dev) if c["path"] == path]


def edit(root, name, data, mtime_ns):
    (root / name).write_bytes(data)
    os.utime(root / name, ns=(mtime_ns, mtime_ns))


def copies(root):
    return sorted(p for p in os.listdir(root) if "sync-conflict" in p)


def apart(a, b, fa, fb, name, data_a, mtime_a, data_b, mtime_b):
    """Both devices change `name` while bob's daemon is down, then reconnect."""
    b.stop()
    edit(fa, name, data_a, mtime_a)
    a.ok("scan")
    edit(fb, name, data_b, mtime_b)
    b.start()
    b.ok("scan")


def archived_sizes(dev, name):
    vs = dev.ok("versions", "docs", name, "--json").json()["versions"]
    return sorted(v["size"] for v in vs if v["path"] == name)


def test_strategies(devices, tmp_path):
    a, b, fa, fb = setup_pair(devices, tmp_path)
    for n in ("n.txt", "p.txt", "m.txt"):
        (fa / n).write_bytes(b"original\n")
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id, "--conflict", "newest",
         "--conflict-window", "10")
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id, "--conflict", "newest",
         "--conflict-window", "10")
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")

    # newest: bob's save is 100 s newer (beyond the 10 s window): it wins on
    # both, alice's version goes to alice's archive, no conflict copy.
    apart(a, b, fa, fb, "n.txt", b"alice newest\n", T0, b"bob newest, longer\n",
          T0 + 100 * 10**9)
    wait_for(lambda: (fa / "n.txt").read_bytes() == b"bob newest, longer\n" and synced(fa, fb),
             timeout=60, interval=0.3, what="newest resolved on both")
    assert copies(fa) == [] and copies(fb) == []
    assert (fb / "n.txt").read_bytes() == b"bob newest, longer\n"
    assert len(b"alice newest\n") in archived_sizes(a, "n.txt")
    for dev in (a, b):
        lst = wait_for(lambda: conflict_on(dev, "n.txt"), timeout=30,
                       what=f"{dev.name}'s trail for n.txt")
        assert len(lst) == 1, lst
        c = lst[0]
        assert c["type"] == "content" and c["strategy"] == "newest", c
        assert c["resolution"] == "archive", c
        assert c["kept"], c
        assert c["kept"][0]["device"] == a.id, c  # alice's version lost
    # on the loser's device the trail points into the archive
    ca = conflict_on(a, "n.txt")[0]
    assert ca["kept_path"].startswith(".landropic/versions/n.txt~"), ca

    # prefer:ALICE, set through both running daemons: alice's version wins
    # on both although bob's is newer; bob archives his.
    for dev in (a, b):
        r = dev.ok("folder", "set", "docs", "--conflict", f"prefer:{a.id}")
        assert "prefer:" in r.err
    apart(a, b, fa, fb, "p.txt", b"alice preferred\n", T0, b"bob, newer but not preferred\n",
          T0 + 500 * 10**9)
    wait_for(lambda: (fb / "p.txt").read_bytes() == b"alice preferred\n" and synced(fa, fb),
             timeout=60, interval=0.3, what="prefer:alice resolved on both")
    assert copies(fa) == [] and copies(fb) == []
    assert len(b"bob, newer but not preferred\n") in archived_sizes(b, "p.txt")
    for dev in (a, b):
        lst = wait_for(lambda: conflict_on(dev, "p.txt"), timeout=30,
                       what=f"{dev.name}'s trail for p.txt")
        c = lst[0]
        assert c["strategy"] == f"prefer:{a.id}" and c["resolution"] == "archive", c
        assert c["kept"][0]["device"] == b.id, c  # bob's version lost

    # prefer-local on both: each names its own version, so keep-both: bob's
    # newer version keeps the name, alice's becomes the copy, on both.
    for dev in (a, b):
        dev.ok("folder", "set", "docs", "--conflict", "prefer-local")
    apart(a, b, fa, fb, "m.txt", b"alice mine\n", T0, b"bob mine too\n", T0 + 60 * 10**9)

    def kept_both():
        s = synced(fa, fb)
        return s and len(copies(fa)) == 1 and s
    wait_for(kept_both, timeout=60, interval=0.3, what="mismatch kept both")
    copy = copies(fa)[0]
    assert copy.startswith("m.sync-conflict-") and copy.endswith(".txt")
    for root in (fa, fb):
        assert (root / "m.txt").read_bytes() == b"bob mine too\n"
        assert (root / copy).read_bytes() == b"alice mine\n"
    for dev in (a, b):
        lst = wait_for(lambda: conflict_on(dev, "m.txt"), timeout=30,
                       what=f"{dev.name}'s trail for m.txt")
        c = lst[0]
        assert c["strategy"] == "prefer-local" and c["resolution"] == "copy", c
        assert c["kept_path"] == copy, c

    # folders --json shows the stored strategy; a bad one is refused with the
    # usage code, naming it, and changes nothing.
    f = a.ok("folders", "--json").json()["folders"][0]
    assert f["conflict"] == "prefer-local" and f["conflict_window"] == 10
    r = a.run("folder", "set", "docs", "--conflict", "oldest")
    assert r.rc == 2 and "oldest" in r.err and r.err.count("\n") == 1, r
    r = a.run("folder", "set", "nope", "--conflict", "newest")
    assert r.rc == 1 and "nope" in r.err, r
    assert a.ok("folders", "--json").json()["folders"][0]["conflict"] == "prefer-local"
