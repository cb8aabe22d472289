"""Archive retention through the CLI: `folder set --versions-keep N` /
`--versions-days DAYS` bound what .landropic/versions/ keeps (nothing is
pruned unless one is set), the settings show in `folders --json`, survive a
restart, and bad values are usage errors naming the option."""
import os
import time

from conftest import shared_docs, wait_for


def archived(dev, path):
    return [v for v in dev.ok("versions", "docs", "--json").json()["versions"]
            if v["path"] == path]


def prunes(dev):
    """Prunes the daemon finished (logged at debug level)."""
    with open(os.path.join(dev.home, "landropic.log"), errors="replace") as f:
        return f.read().count("prune done:")


def folder_cfg(dev):
    return dev.ok("folders", "--json").json()["folders"][0]


def edit_until_archived(a, b, fa, fb, n, start=0):
    """n edits of notes.txt on alice, each waited for on bob (each one
    archives bob's previous version there)."""
    for i in range(start, start + n):
        data = b"version %d\n" % i
        (fa / "notes.txt").write_bytes(data)
        os.utime(fa / "notes.txt", (1700000000 + i, 1700000000 + i))
        a.ok("scan")
        wait_for(lambda: (fb / "notes.txt").exists() and (fb / "notes.txt").read_bytes() == data,
                 timeout=30, interval=0.1, what=f"edit {i} on bob")


def test_keep_newest_versions_per_file(devices, tmp_path):
    a, b, fa, fb = shared_docs(devices, tmp_path)
    a.start()
    b.start("--log-level", "debug")
    edit_until_archived(a, b, fa, fb, 6)
    # Without a rule nothing is pruned, ever (a rule's first prune comes at
    # the next 2 s tick).
    time.sleep(2.5)
    assert len(archived(b, "notes.txt")) == 5 and prunes(b) == 0
    r = b.ok("folder", "set", "docs", "--versions-keep", "2")
    assert "archived versions kept: the newest 2 of each file" in r.err, r
    assert folder_cfg(b)["versions_keep"] == 2 and folder_cfg(b)["versions_days"] == 0
    wait_for(lambda: len(archived(b, "notes.txt")) == 2, timeout=20, interval=0.3,
             what="bob's archive pruned to 2 versions")
    newest = archived(b, "notes.txt")[-1]["id"]  # listed oldest first
    with open(fb / ".landropic" / "versions" / newest, "rb") as f:
        assert f.read() == b"version 4\n"  # the newest one displaced
    log = open(os.path.join(b.home, "landropic.log")).read()
    assert "versions: folder=docs pruned 3 archived versions" in log, log[-2000:]
    # Later displacements are pruned too, a while after they happen.
    edit_until_archived(a, b, fa, fb, 3, start=6)
    wait_for(lambda: len(archived(b, "notes.txt")) == 2, timeout=40, interval=0.5,
             what="bob's archive pruned again after more edits")
    assert [v["id"] for v in archived(b, "notes.txt")][-1].startswith("notes.txt~")
    # Alice set nothing: her archive (empty: nothing displaced hers) is hers alone.
    assert folder_cfg(a)["versions_keep"] == 0
    # The setting is kept across a restart, and 0 lifts the limit.
    b.stop()
    assert folder_cfg(b)["versions_keep"] == 2
    b.ok("folder", "set", "docs", "--versions-keep", "0")
    b.start("--log-level", "debug")
    before = prunes(b)
    edit_until_archived(a, b, fa, fb, 3, start=9)
    # Past when a prune would follow these writes (10 s after, on a 2 s tick).
    time.sleep(12.5)
    assert len(archived(b, "notes.txt")) == 5 and prunes(b) == before


def test_age_limit_and_bad_values(devices, tmp_path):
    a, b, fa, fb = shared_docs(devices, tmp_path)
    vers = fb / ".landropic" / "versions"
    vers.mkdir()
    # Versions archived long ago (as an older daemon would have left them),
    # and one that is not the archive's.
    (vers / "old.txt~20200101-000000").write_bytes(b"old\n")
    (vers / "sub").mkdir()
    (vers / "sub" / "x~20200101-000000").write_bytes(b"x\n")
    (vers / "mine.txt").write_bytes(b"not an archived version\n")
    # Names that only look stamped: no real date, or a number the archive
    # never gives (black-box round 34a: listed as archived in year -1, and
    # pruned by age).
    odd = ("z~00000000-000000", "z~20201301-000000", "z~20200230-120000", "z~20200101-000000-0")
    for name in odd:
        (vers / name).write_bytes(b"mine\n")
    for args, opt in ((["--versions-keep", "-1"], "--versions-keep"),
                      (["--versions-keep", "1000001"], "--versions-keep"),
                      (["--versions-days", "x"], "--versions-days"),
                      (["--versions-days", "36501"], "--versions-days"),
                      # strtoll's leniency (black-box round 34a)
                      (["--versions-keep", " 5"], "--versions-keep"),
                      (["--versions-keep", "+5"], "--versions-keep"),
                      (["--conflict-window", "0x10"], "--conflict-window")):
        r = b.run("folder", "set", "docs", *args)
        assert r.rc == 2 and opt in r.err and len(r.err.splitlines()) == 1, (args, r)
    r = b.run("folder", "set", "docs")
    assert r.rc == 2 and "--versions-keep" in r.err, r
    b.ok("folder", "set", "docs", "--versions-days", "30")
    b.start("--log-level", "debug")
    wait_for(lambda: not (vers / "old.txt~20200101-000000").exists(), timeout=20, interval=0.3,
             what="the old version pruned by age")
    wait_for(lambda: not (vers / "sub").exists(), timeout=10, what="its emptied mirror removed")
    assert (vers / "mine.txt").read_bytes() == b"not an archived version\n"
    assert all((vers / name).exists() for name in odd)
    assert b.ok("versions", "docs", "z", "--json").json()["versions"] == []
    a.start()
    edit_until_archived(a, b, fa, fb, 2)
    done = prunes(b)
    wait_for(lambda: prunes(b) > done, timeout=40, interval=0.5,
             what="a prune after the edits")
    assert len(archived(b, "notes.txt")) == 1  # fresh versions are within 30 days
    # Lifted, then set again to the same value: a prune at once again.
    b.ok("folder", "set", "docs", "--versions-days", "0")
    time.sleep(2.5)  # a tick sees it lifted
    done = prunes(b)
    b.ok("folder", "set", "docs", "--versions-days", "30")
    wait_for(lambda: prunes(b) > done, timeout=8, interval=0.3, what="a prune once set again")
    # `folder add` takes the options too.
    other = tmp_path / "other"
    other.mkdir()
    a.ok("folder", "add", str(other), "--id", "other", "--versions-keep", "7",
         "--versions-days", "9")
    f = [f for f in a.ok("folders", "--json").json()["folders"] if f["id"] == "other"][0]
    assert f["versions_keep"] == 7 and f["versions_days"] == 9, f
