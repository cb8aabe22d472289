"""Conflicts made visible and reversible (issue #6): with real daemons, a
keep-both conflict leaves both texts on both devices, the audit trail
(`conflicts --json`) lists it on both with where the loser went, `status`
counts the conflict copy, `events` reports it, `versions` lists what a
peer's change displaced, and `restore` puts a version back as a new change
that syncs to the other device (both with and without the daemon)."""
import base64
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import BIN, wait_for
from test_04_sync import add_folders, setup_pair, synced
from test_07_sync_faults import error_paths, start_without_dac


def conflicts(dev, *args):
    return dev.ok("conflicts", *args, "--json").json()["conflicts"]


def folder_status(dev):
    return dev.ok("status", "--json").json()["folders"][0]


def test_keep_both_audit_versions_restore(devices, tmp_path):
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "report.txt").write_bytes(b"original\n")
    (fa / "notes.txt").write_bytes(b"notes v1\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    # Nothing happened yet: an empty trail, no copies.
    assert conflicts(a) == [] and conflicts(b, "docs") == []
    assert folder_status(a)["conflicts"] == 0

    ev = subprocess.Popen([BIN, "--home", a.home, "events", "--json"], stdout=subprocess.PIPE,
                          text=True)
    try:
        # Both edit while apart; bob's newer mtime keeps the name.
        b.stop()
        (fa / "report.txt").write_bytes(b"alice's version\n")
        os.utime(fa / "report.txt", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
        a.ok("scan")
        (fb / "report.txt").write_bytes(b"bob's version, longer\n")
        os.utime(fb / "report.txt", ns=(1_700_000_100_000_000_000, 1_700_000_100_000_000_000))
        b.start()
        b.ok("scan")

        def converged():
            s = synced(fa, fb)
            return s and len([p for p in s if "sync-conflict" in p]) == 1 and s
        s = wait_for(converged, timeout=60, interval=0.3, what="conflict resolved on both")
        copy = [p for p in s if "sync-conflict" in p][0]
        for root in (fa, fb):
            assert (root / "report.txt").read_bytes() == b"bob's version, longer\n"
            assert (root / copy).read_bytes() == b"alice's version\n"

        # The audit trail on both devices: one content conflict on report.txt,
        # the loser kept as the copy, both devices named.
        for dev in (a, b):
            lst = wait_for(lambda: conflicts(dev), timeout=30, what=f"{dev.name}'s trail")
            assert len(lst) == 1, lst
            c = lst[0]
            assert c["folder"] == "docs" and c["path"] == "report.txt"
            assert c["type"] == "content" and c["strategy"] == "keep-both"
            assert c["resolution"] == "copy"
            assert c["kept_path"] == copy
            assert c["kept"] and c["kept"][0]["path"] == copy
            assert c["kept"][0]["device"] == a.id  # alice's version lost
            assert set(c["devices"]) == {a.id, b.id}
            assert c["time"].endswith("Z")
            # Filtered by folder: the same; status counts the copy present.
            assert conflicts(dev, "docs") == lst
            wait_for(lambda: folder_status(dev)["conflicts"] == 1, timeout=30,
                     what=f"{dev.name}'s status counts the copy")
        assert c["winner"] in ("local", "remote")
        # A second pull round does not record the same conflict again.
        a.ok("sync")
        b.ok("sync")
        time.sleep(1)
        assert len(conflicts(a)) == 1 and len(conflicts(b)) == 1

        # The loser's holder (alice) archived her original when bob's version
        # replaced it: listed with why.
        vs = a.ok("versions", "docs", "report.txt", "--json").json()["versions"]
        assert any(v["path"] == "report.txt" and v["size"] == len(b"alice's version\n")
                   for v in vs), vs
        assert any("conflict" in v["why"] for v in vs), vs
        # A plain update soon after: the version it replaces (bob's, not the
        # conflict's loser) is not said to have lost the conflict.
        (fb / "report.txt").write_bytes(b"bob's next\n")
        b.ok("scan")
        wait_for(lambda: (fa / "report.txt").read_bytes() == b"bob's next\n", timeout=60,
                 interval=0.3, what="bob's next version on alice")
        vs = a.ok("versions", "docs", "report.txt", "--json").json()["versions"]
        why = {v["size"]: v["why"] for v in vs}
        assert "conflict" in why[len(b"alice's version\n")], vs
        assert "conflict" not in why[len(b"bob's version, longer\n")], vs
        time.sleep(0.5)
    finally:
        ev.terminate()
        out, _ = ev.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    cev = [e for e in events if e["type"] == "conflict"]
    assert len(cev) == 1, events
    assert cev[0]["folder"] == "docs" and cev[0]["conflict"]["path"] == "report.txt"
    assert cev[0]["conflict"]["kept_path"] == copy
    # The event's record is the listed one, id included (it was 0).
    assert cev[0]["conflict"]["id"] == conflicts(a)[0]["id"] > 0
    # The log names it.
    log = open(os.path.join(a.home, "landropic.log")).read()
    assert "conflict type=content" in log and "path=report.txt" in log

    # A peer's plain update replaces notes.txt on alice: the old one is archived.
    (fb / "notes.txt").write_bytes(b"notes v2 from bob\n")
    b.ok("scan")
    wait_for(lambda: (fa / "notes.txt").read_bytes() == b"notes v2 from bob\n", timeout=60,
             interval=0.3, what="bob's notes on alice")
    vs = a.ok("versions", "docs", "notes.txt", "--json").json()["versions"]
    assert len(vs) == 1 and vs[0]["path"] == "notes.txt", vs
    assert vs[0]["size"] == len(b"notes v1\n") and "peer" in vs[0]["why"]
    v1 = vs[0]["id"]
    assert v1.startswith("notes.txt~")
    # The whole archive lists both files' versions; human output names them.
    allv = a.ok("versions", "docs", "--json").json()["versions"]
    assert {v["path"] for v in allv} == {"report.txt", "notes.txt"}
    assert "notes.txt" in a.ok("versions", "docs").out

    # Restore v1 (by its stamp alone): back on alice as a new change, then on bob.
    stamp = v1.split("~", 1)[1]
    r = a.ok("restore", "docs", "notes.txt", "--version", stamp)
    assert "notes.txt" in r.out
    assert (fa / "notes.txt").read_bytes() == b"notes v1\n"
    wait_for(lambda: (fb / "notes.txt").read_bytes() == b"notes v1\n", timeout=60,
             interval=0.3, what="restored notes on bob")
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="settled after restore")
    # What the restore replaced (bob's v2) is archived in turn.
    vs = a.ok("versions", "docs", "notes.txt", "--json").json()["versions"]
    assert sorted(v["size"] for v in vs) == sorted([len(b"notes v1\n"),
                                                    len(b"notes v2 from bob\n")]), vs
    # Bob archived his v2 when the restored version arrived.
    vb = b.ok("versions", "docs", "notes.txt", "--json").json()["versions"]
    assert any(v["size"] == len(b"notes v2 from bob\n") for v in vb), vb
    # Human output: one header per file, then its versions (it was repeated
    # before each version: black-box round 34a).
    human = a.ok("versions", "docs", "notes.txt").out.splitlines()
    assert human.count("notes.txt") == 1 and sum("version=" in ln for ln in human) == 2, human

    # Unknown path or version: exit 1 naming it; nothing changed.
    r = a.run("restore", "docs", "no-such.txt")
    assert r.rc == 1 and "no-such.txt" in r.err, r
    r = a.run("restore", "docs", "notes.txt", "--version", "19990101-000000")
    assert r.rc == 1 and "19990101-000000" in r.err, r
    r = a.run("restore", "nofolder", "notes.txt")
    assert r.rc == 1 and "nofolder" in r.err, r
    r = a.run("restore", "docs")
    assert r.rc == 2, r
    for bad in ("../etc/passwd", ".landropic/versions"):
        for cmd in (("versions", "docs", bad), ("restore", "docs", bad)):
            r = a.run(*cmd)
            assert r.rc == 2 and bad.split("/")[0] in r.err, r  # a usage error
    assert (fa / "notes.txt").read_bytes() == b"notes v1\n"

    # Without the daemon: versions reads the archive itself; restore works
    # here (the newest version: bob's v2, displaced by the first restore) and
    # syncs once the daemon runs again.
    with_daemon = a.ok("versions", "docs", "--json").json()
    a.stop()
    without = a.ok("versions", "docs", "--json").json()
    assert without == with_daemon
    r = a.run("versions", "nofolder")
    assert r.rc == 1 and "nofolder" in r.err, r
    for bad in ("../etc/passwd", ".landropic/versions"):
        for cmd in (("versions", "docs", bad), ("restore", "docs", bad)):
            r = a.run(*cmd)
            assert r.rc == 2 and bad.split("/")[0] in r.err, r  # a usage error
    r = a.run("restore", "docs", "no-such.txt")
    assert r.rc == 1 and "no-such.txt" in r.err, r
    r = a.ok("restore", "docs", "notes.txt", "--json")
    assert r.json()["replaced"] is True and r.json()["path"] == "notes.txt"
    assert (fa / "notes.txt").read_bytes() == b"notes v2 from bob\n"
    a.start()
    wait_for(lambda: (fb / "notes.txt").read_bytes() == b"notes v2 from bob\n", timeout=60,
             interval=0.3, what="offline restore synced to bob")
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="settled")
    # The trail outlives the folder, and is still listed by its ID (it was
    # refused: "no folder with ID 'docs'"); an ID with no rows is refused.
    trail = conflicts(a)
    a.ok("folder", "remove", "docs")
    assert conflicts(a, "docs") == trail and trail
    r = a.run("conflicts", "nosuch")
    assert r.rc == 1 and "no folder with ID 'nosuch'" in r.err, r


def test_modify_delete_and_metadata_recorded(devices, tmp_path):
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "keep.txt").write_bytes(b"first\n")
    (fa / "meta.txt").write_bytes(b"same bytes\n")
    os.chmod(fa / "meta.txt", 0o644)
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    b.stop()
    # Alice deletes keep.txt and makes meta.txt private; bob edits keep.txt and
    # makes meta.txt group-readable: a modify-vs-delete and a metadata conflict.
    os.unlink(fa / "keep.txt")
    os.chmod(fa / "meta.txt", 0o600)
    a.ok("scan")
    (fb / "keep.txt").write_bytes(b"edited by bob\n")
    os.chmod(fb / "meta.txt", 0o640)
    b.start()
    b.ok("scan")

    # The edit survives on both; the metadata converges; no copy is made.
    def settled():
        s = synced(fa, fb)
        return s and "keep.txt" in s and s
    s = wait_for(settled, timeout=60, interval=0.3, what="edit back on alice")
    assert (fa / "keep.txt").read_bytes() == b"edited by bob\n"
    assert not [p for p in s if "sync-conflict" in p]
    assert s["meta.txt"][1] in (0o600, 0o640)

    # The modify-delete is seen by both. The metadata conflict is recorded by
    # whichever device meets the other's version first; if that is alice, she
    # merges the vectors and bob then receives a plainly newer version (CI saw
    # that order once), so each device's trail holds it at most once and the
    # two together at least once.
    modify_delete = ("keep.txt", "structural", "modify-delete", "modify-wins")
    metadata = ("meta.txt", "metadata", "metadata", "merged")

    def trail(dev):
        lst = conflicts(dev, "docs")
        kinds = {(c["path"], c["type"], c["detail"], c["resolution"]) for c in lst}
        return modify_delete in kinds and kinds <= {modify_delete, metadata} and lst
    for dev in (a, b):
        lst = wait_for(lambda: trail(dev), timeout=30, what=f"{dev.name}'s trail")
        for c in lst:
            # Nothing was lost: no copy, nowhere to look.
            assert c["kept_path"] is None and c["kept"] == [], c
            assert set(c["devices"]) == {a.id, b.id}
        md = [c for c in lst if c["detail"] == "modify-delete"][0]
        # The live edit (bob's) won on both devices.
        assert md["winner"] == ("remote" if dev is a else "local")
        assert folder_status(dev)["conflicts"] == 0

    def merged_somewhere():
        return any(c["detail"] == "metadata" for dev in (a, b) for c in conflicts(dev, "docs"))
    wait_for(merged_somewhere, timeout=30, what="the metadata conflict in a trail")


def test_file_vs_directory_recorded(devices, tmp_path):
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "thing").write_bytes(b"a file at first\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    b.stop()
    # Alice edits the file; bob replaces it with a directory.
    (fa / "thing").write_bytes(b"alice edited the file\n")
    a.ok("scan")
    os.unlink(fb / "thing")
    (fb / "thing").mkdir()
    (fb / "thing" / "inner.txt").write_bytes(b"inside\n")
    b.start()
    b.ok("scan")

    def converged():
        s = synced(fa, fb)
        return (s and s.get("thing", ("",))[0] == "dir" and "thing/inner.txt" in s
                and len([p for p in s if "sync-conflict" in p]) == 1 and s)
    s = wait_for(converged, timeout=60, interval=0.3, what="directory kept, file copied")
    copy = [p for p in s if "sync-conflict" in p][0]
    assert copy.startswith("thing.sync-conflict-")
    assert (fa / copy).read_bytes() == b"alice edited the file\n"
    for dev in (a, b):
        def typed():
            lst = [c for c in conflicts(dev) if c["path"] == "thing"]
            return lst if lst and lst[0]["detail"] == "type" else None
        lst = wait_for(typed, timeout=30, what=f"{dev.name}'s trail")
        assert len(lst) == 1, lst
        c = lst[0]
        assert c["type"] == "structural" and c["resolution"] == "copy"
        assert c["kept_path"] == copy and c["kept"][0]["device"] == a.id
        wait_for(lambda: folder_status(dev)["conflicts"] == 1, timeout=30,
                 what=f"{dev.name}'s status counts the copy")


def test_same_author_loses_twice_in_one_second(devices, tmp_path):
    """Two conflicts whose losers have the same author and the same mtime
    second would get the same copy name: the second copy is named with its
    content tag, both losers are kept, and the devices converge (they stayed
    apart for good, the path failing with "name is taken")."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "f.txt").write_bytes(b"base\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    lost = set()
    for rnd in (1, 2):
        b.stop()
        (fa / "f.txt").write_bytes(f"A round {rnd}\n".encode())
        os.utime(fa / "f.txt", ns=(1_577_836_800_000_000_000,) * 2)  # same second both rounds
        a.ok("scan")
        (fb / "f.txt").write_bytes(f"B round {rnd}\n".encode())
        os.utime(fb / "f.txt", ns=(1_609_459_200_000_000_000,) * 2)
        b.start()
        b.ok("scan")
        lost.add(f"A round {rnd}\n".encode())

        def converged():
            s = synced(fa, fb)
            return s and len([p for p in s if "sync-conflict" in p]) == rnd and s
        s = wait_for(converged, timeout=60, interval=0.3, what=f"round {rnd} converged")
        assert (fa / "f.txt").read_bytes() == f"B round {rnd}\n".encode()
    copies = sorted(p for p in s if "sync-conflict" in p)
    assert {(fa / p).read_bytes() for p in copies} == lost
    assert len(set(copies)) == 2 and all(p.startswith("f.sync-conflict-20200101-000000-")
                                         for p in copies), copies
    for dev in (a, b):
        assert dev.ok("sync", "--wait", "--timeout", "30").rc == 0
        st = folder_status(dev)
        assert st["in_sync"] and not st["errors"], st


def short_id_order(dev):
    """The device's short ID (the first 64 bits of its ID) as a sortable key:
    the first 13 base32 characters' values."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return [alphabet.index(ch) for ch in dev.id.replace("-", "")[:13]]


def test_mtime_tie_goes_to_the_larger_device_id(devices, tmp_path):
    """Both edit with the same mtime: the version made by the device with the
    larger ID keeps the name on both, whichever device that is (issue #4's
    rule; before, the larger content won the tie)."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "t.txt").write_bytes(b"base\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    big, small = (a, b) if short_id_order(a) > short_id_order(b) else (b, a)
    root = {a.name: fa, b.name: fb}
    # The larger device's text is the shorter one: a content tie-break picks the other.
    texts = {big.name: b"big\n", small.name: b"the smaller device's text\n"}
    b.stop()
    for dev in (a, b):
        (root[dev.name] / "t.txt").write_bytes(texts[dev.name])
        os.utime(root[dev.name] / "t.txt", ns=(1_700_000_000_000_000_000,) * 2)
        if dev is a:
            a.ok("scan")
    b.start()
    b.ok("scan")

    def converged():
        s = synced(fa, fb)
        return s and len([p for p in s if "sync-conflict" in p]) == 1 and s
    s = wait_for(converged, timeout=60, interval=0.3, what="the tie resolved on both")
    copy = [p for p in s if "sync-conflict" in p][0]
    for r in (fa, fb):
        assert (r / "t.txt").read_bytes() == texts[big.name]
        assert (r / copy).read_bytes() == texts[small.name]
    assert small.id.replace("-", "")[:7] in copy


def test_trail_waits_for_the_copy(devices, tmp_path):
    """Bob's version loses, and his copy cannot be made (its directory is
    read-only on bob): his trail shows no conflict while the copy fails (a
    row named a copy that did not exist, and stayed), the path is listed
    among the errors and his version stays. Once the directory is writable
    the copy is made and the row names it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "ro").mkdir()
    (fa / "ro" / "f.txt").write_bytes(b"base\n")
    add_folders(a, b, fa, fb)
    a.start()
    start_without_dac(b)
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    b.stop()
    (fb / "ro" / "f.txt").write_bytes(b"bob's, older\n")
    os.utime(fb / "ro" / "f.txt", ns=(1_700_000_000_000_000_000,) * 2)
    os.chmod(fb / "ro", 0o555)
    (fa / "ro" / "f.txt").write_bytes(b"alice's, newer\n")
    os.utime(fa / "ro" / "f.txt", ns=(1_700_000_100_000_000_000,) * 2)
    a.ok("scan")
    start_without_dac(b)
    b.ok("scan")
    wait_for(lambda: "ro/f.txt" in error_paths(b), timeout=60, interval=0.3,
             what="the copy failing on bob")
    time.sleep(1)  # a retry or two
    assert conflicts(b) == []
    assert (fb / "ro" / "f.txt").read_bytes() == b"bob's, older\n"
    os.chmod(fb / "ro", 0o755)
    b.ok("sync")
    wait_for(lambda: (fb / "ro" / "f.txt").read_bytes() == b"alice's, newer\n", timeout=60,
             interval=0.3, what="alice's version on bob")
    trail = wait_for(lambda: conflicts(b), timeout=30, interval=0.3, what="bob's trail")
    assert len(trail) == 1, trail
    kept = trail[0]["kept_path"]
    assert (fb / kept).read_bytes() == b"bob's, older\n", trail


def test_directory_replaced_while_the_other_adds_inside(devices, tmp_path):
    """Alice replaces a directory with a file (or a symlink) while bob,
    apart, adds a file inside it: the directory keeps the name with bob's
    file, alice's file or symlink becomes the conflict copy, and both
    converge (each refused the other's change for good before)."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    for d in ("dd", "ds"):
        (fa / d).mkdir()
        (fa / d / "one").write_bytes(b"1\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    b.stop()
    shutil.rmtree(fa / "dd")
    (fa / "dd").write_bytes(b"alice: a file where the directory was\n")
    shutil.rmtree(fa / "ds")
    os.symlink("/nonexistent/target", fa / "ds")
    a.ok("scan")
    (fb / "dd" / "bnew").write_bytes(b"bob: new file\n")
    (fb / "ds" / "bnew").write_bytes(b"bob: new file too\n")
    b.start()
    b.ok("scan")

    def converged():
        s = synced(fa, fb)
        return (s and s.get("dd", ("",))[0] == "dir" and s.get("ds", ("",))[0] == "dir"
                and "dd/bnew" in s and "ds/bnew" in s
                and len([p for p in s if "sync-conflict" in p]) == 2 and s)
    s = wait_for(converged, timeout=90, interval=0.3, what="directories kept, copies made")
    copies = sorted(p for p in s if "sync-conflict" in p)
    assert copies[0].startswith("dd.sync-conflict-") and copies[1].startswith("ds.sync-conflict-")
    assert (fb / copies[0]).read_bytes() == b"alice: a file where the directory was\n"
    assert os.readlink(fb / copies[1]) == "/nonexistent/target"
    assert not (fa / "dd" / "one").exists()  # alice's deletion of what she knew stands
    for dev in (a, b):
        assert dev.ok("sync", "--wait", "--timeout", "30").rc == 0
        st = folder_status(dev)
        assert st["in_sync"] and not st["errors"], st


def test_directory_replaced_by_a_symlink_while_the_other_edits_inside(devices, tmp_path):
    """Bob replaces a directory with a symlink (to a directory outside the
    folder) while alice, apart, edits a file in it and adds another: the
    directory keeps the name with alice's files, bob's symlink becomes the
    conflict copy, and nothing is written through the symlink. Bob failed
    to apply alice's files under his symlink ('parent of esc/e1: Too many
    levels of symbolic links') until alice happened to rescan."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (fa / "esc").mkdir()
    (fa / "esc" / "e1").write_bytes(b"e1\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: synced(fa, fb), timeout=60, interval=0.3, what="initial sync")
    b.stop()
    shutil.rmtree(fb / "esc")
    os.symlink(str(outside), fb / "esc")
    (fa / "esc" / "e2").write_bytes(b"e2\n")
    (fa / "esc" / "e1").write_bytes(b"e1 edited\n")
    a.ok("scan")
    b.start()

    def converged():
        s = synced(fa, fb)
        return (s and s.get("esc", ("",))[0] == "dir" and "esc/e1" in s and "esc/e2" in s
                and len([p for p in s if "sync-conflict" in p]) == 1 and s)
    s = wait_for(converged, timeout=60, interval=0.3, what="directory kept, symlink copied")
    copy = [p for p in s if "sync-conflict" in p][0]
    assert copy.startswith("esc.sync-conflict-") and os.readlink(fb / copy) == str(outside)
    assert (fb / "esc" / "e1").read_bytes() == b"e1 edited\n"
    assert os.listdir(outside) == []
    for dev in (a, b):
        assert dev.ok("sync", "--wait", "--timeout", "30").rc == 0
        st = folder_status(dev)
        assert st["in_sync"] and not st["errors"], st


def test_long_name_versions_listed_and_restored_by_name(devices, tmp_path):
    """A leaf too long for the archive's stamp is archived cut, tagged with a
    hash of the full name; `versions` and `restore` given the full name find
    it, and the restore puts it back under the full name. Before, only the
    cut name listed it, and restoring that made a file under the cut name."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    name = "会议记录" * 20 + ".txt"  # 244 bytes: with "~STAMP" over NAME_MAX
    (fa / "sub").mkdir()
    (fa / "sub" / name).write_bytes(b"precious\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: (fb / "sub" / name).exists(), timeout=60, interval=0.3, what="first sync")
    os.unlink(fb / "sub" / name)
    b.ok("scan")
    wait_for(lambda: not (fa / "sub" / name).exists(), timeout=60, interval=0.3,
             what="the delete on alice")
    vs = a.ok("versions", "docs", "sub/" + name, "--json").json()["versions"]
    assert len(vs) == 1 and vs[0]["path"] == "sub/" + name and vs[0].get("cut") is True, vs
    # Not listed for another long name sharing the cut prefix.
    other = "会议记录" * 20 + ".doc"
    assert a.ok("versions", "docs", "sub/" + other, "--json").json()["versions"] == []
    a.ok("restore", "docs", "sub/" + name)
    assert (fa / "sub" / name).read_bytes() == b"precious\n"
    assert sorted(os.listdir(fa / "sub")) == [name], os.listdir(fa / "sub")
    wait_for(lambda: (fb / "sub" / name).exists(), timeout=60, interval=0.3,
             what="the restored file on bob")
    assert sorted(os.listdir(fb / "sub")) == [name]


def test_version_of_a_hard_linked_file_is_not_rewritten_through_the_link(devices, tmp_path):
    """A file with another hard link (outside the folder, or a second name in
    it) is archived as a copy when a peer's change replaces or deletes it.
    Linked into the archive, it stayed one inode with the other link: an
    ordinary write through that link rewrote the kept version, and `restore`
    brought back the new text (black-box round 25)."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "r.txt").write_bytes(b"precious v1\n")
    (fa / "d.txt").write_bytes(b"kept v1\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: (fb / "r.txt").exists() and (fb / "d.txt").exists(), timeout=60,
             interval=0.3, what="first sync")
    outside = tmp_path / "outside-link"
    os.link(fb / "r.txt", outside)
    os.link(fb / "d.txt", fb / "d2.txt")
    b.ok("scan")
    wait_for(lambda: (fa / "d2.txt").exists(), timeout=60, interval=0.3, what="d2.txt on alice")
    (fa / "r.txt").write_bytes(b"alice's v2\n")
    os.unlink(fa / "d.txt")
    a.ok("scan")
    wait_for(lambda: (fb / "r.txt").read_bytes() == b"alice's v2\n" and
             not (fb / "d.txt").exists(), timeout=60, interval=0.3, what="the change on bob")
    outside.write_bytes(b"scratch\n")  # in place, as an editor may
    (fb / "d2.txt").write_bytes(b"edited through the other name\n")
    for name, text in (("r.txt", b"precious v1\n"), ("d.txt", b"kept v1\n")):
        vs = b.ok("versions", "docs", name, "--json").json()["versions"]
        assert len(vs) == 1 and vs[0]["size"] == len(text), vs
        b.ok("restore", "docs", name)
        assert (fb / name).read_bytes() == text


def test_name_not_utf8_versions_and_restore(devices, tmp_path):
    """`versions` and `restore` take a name that is not UTF-8 (as the shell
    gives it) with the daemon running or not: they refused it ('must be
    valid UTF-8'), so such a file listed by `versions` could not be put back
    from the CLI. The version's ID (`--version`) holds the name too."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    raw = b"caf\xff.txt"
    name = os.fsdecode(raw)  # surrogate-escaped: subprocess passes the raw bytes
    path = os.path.join(os.fsencode(fa), raw)
    with open(path, "wb") as fh:
        fh.write(b"one\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: os.path.exists(os.path.join(os.fsencode(fb), raw)), timeout=60,
             interval=0.3, what="first sync")
    with open(os.path.join(os.fsencode(fb), raw), "wb") as fh:
        fh.write(b"two\n")
    b.ok("scan")
    wait_for(lambda: open(path, "rb").read() == b"two\n", timeout=60, interval=0.3,
             what="bob's edit on alice")
    vs = a.ok("versions", "docs", name, "--json").json()["versions"]
    assert len(vs) == 1 and vs[0]["path_b64"] == "Y2Fm/y50eHQ=", vs
    vid = os.fsdecode(base64.b64decode(vs[0]["id_b64"]))
    r = a.ok("restore", "docs", name, "--version", vid)
    assert "caf\\xff.txt" in r.out, r.out
    assert open(path, "rb").read() == b"one\n"
    wait_for(lambda: open(os.path.join(os.fsencode(fb), raw), "rb").read() == b"one\n",
             timeout=60, interval=0.3, what="the restored file on bob")
    # Without the daemon: the restore archived alice's "two", the newest.
    a.stop()
    assert len(a.ok("versions", "docs", name, "--json").json()["versions"]) == 2
    a.ok("restore", "docs", name)
    assert open(path, "rb").read() == b"two\n"


def test_conflict_copy_this_device_ignores_stays_here(devices, tmp_path):
    """A device whose .landropicignore matches conflict copies keeps its copy
    of a losing version as an ignored file: on its disk, not sent. It was
    recorded and sent to the peer like any copy."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / ".landropicignore").write_bytes(b"*.sync-conflict-*\n")
    (fa / "r.txt").write_bytes(b"base\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: (fb / "r.txt").exists(), timeout=60, interval=0.3, what="first sync")
    b.stop()
    (fa / "r.txt").write_bytes(b"alice's, older\n")
    os.utime(fa / "r.txt", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    a.ok("scan")
    (fb / "r.txt").write_bytes(b"bob's, newer\n")
    os.utime(fb / "r.txt", ns=(1_700_000_100_000_000_000, 1_700_000_100_000_000_000))
    b.start()
    b.ok("scan")
    wait_for(lambda: (fa / "r.txt").read_bytes() == b"bob's, newer\n", timeout=60,
             interval=0.3, what="bob's version on alice")
    copies = [p for p in os.listdir(fa) if ".sync-conflict-" in p]
    assert len(copies) == 1 and (fa / copies[0]).read_bytes() == b"alice's, older\n", copies
    for dev in (a, b):
        assert dev.run("sync", "--wait", "--timeout", "30").rc == 0
    assert not [p for p in os.listdir(fb) if ".sync-conflict-" in p], os.listdir(fb)
    # The trail on alice still says where her version went.
    lst = conflicts(a)
    assert len(lst) == 1 and lst[0]["kept_path"] == copies[0], lst


def test_versions_of_a_folder_whose_root_is_missing_say_so(device, tmp_path):
    """A folder on a disk not mounted: `versions` said "No archived
    versions." (exit 0) and `restore` blamed the path, as if the archive
    were gone (black-box round 34a). Both now name the missing root."""
    root = tmp_path / "docs"
    root.mkdir()
    device.ok("folder", "add", str(root), "--id", "docs")
    os.rename(root, tmp_path / "away")
    for running in (False, True):
        if running:
            device.start()
        for args in (["versions", "docs"], ["versions", "docs", "--json"],
                     ["restore", "docs", "a.txt"]):
            r = device.run(*args)
            assert r.rc == 1 and f"folder root {root} is missing" in r.err, (running, args, r)
            assert r.out == "", r


def test_restore_says_when_the_restored_version_will_not_sync(device, tmp_path):
    """`restore --help` promises a change that syncs to the peers; on an
    ignored path or in a receive-only folder it never does, and restore said
    nothing (black-box round 34a)."""
    for fid, mode in (("docs", "send-receive"), ("ro", "receive-only")):
        root = tmp_path / fid
        root.mkdir()
        device.ok("folder", "add", str(root), "--id", fid, "--mode", mode)
        vers = root / ".landropic" / "versions"
        vers.mkdir(parents=True)
        for name in ("kept.txt", "local.txt"):
            (vers / f"{name}~20200101-000000").write_bytes(b"old\n")
    (tmp_path / "docs" / ".landropicignore").write_text("# mine\nlocal.txt\n")
    r = device.ok("restore", "docs", "kept.txt")
    assert "note" not in r.err, r
    assert "stays_local" not in device.ok("restore", "docs", "kept.txt", "--json").json()
    r = device.ok("restore", "docs", "local.txt")
    assert r.err.startswith("landropic: note: the path is ignored (.landropicignore line 2)"), r
    assert (tmp_path / "docs" / "local.txt").read_bytes() == b"old\n"
    r = device.ok("restore", "ro", "kept.txt", "--json")
    assert "receive-only" in r.json()["stays_local"], r
