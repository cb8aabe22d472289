"""prefer:DEVICE with three devices (issue #6): the strategy names the version
that device made, also where it arrives relayed by another. Alice - bob -
carol in a chain (alice and carol never connect), all `prefer:CAROL`.
Carol's edit reaches bob; alice edits the same file while her daemon is
down; when she comes back, carol's version wins on all three (alice's goes
to alice's archive, no conflict copy anywhere) and the trails agree."""
import os

from conftest import free_udp_port, wait_for
from test_14_strategies import conflict_on, copies, edit

T0 = 1_700_000_000_000_000_000


def content(root, name):
    try:
        return (root / name).read_bytes()
    except FileNotFoundError:
        return None


def test_prefer_device_through_a_relay(devices, tmp_path):
    a, b, c = devices("alice"), devices("bob"), devices("carol")
    for d in (a, b, c):
        d.init()
        d.port = free_udp_port()
    for x, y in ((a, b), (b, c)):
        x.ok("peer", "add", y.id, "--name", y.name, "--addr", y.addr())
        y.ok("peer", "add", x.id, "--name", x.name, "--addr", x.addr())
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
