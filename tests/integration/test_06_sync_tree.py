"""Whole trees through the sync engine, end to end with two real daemons on
loopback: a 300-file tree with every kind of entry arrives identical (content,
file and directory modes, mtimes to the nanosecond, symlink targets, empty
directories); edits, deletes and a directory rename made on both sides at once
converge without losing anything; file <-> directory <-> symlink changes
propagate in both directions.

The trees are compared as snapshots of what the contract promises to keep:
a file's bytes, mode and mtime (ns); a directory's existence and mode (its
mtime moves with every child, so it is not compared); a symlink's target
(links are never followed)."""
import hashlib
import os
import random
import signal
import stat

from conftest import free_udp_port, wait_for

FOLDER = "tree"


def pair_up(a, b):
    a.ok("peer", "add", b.id, "--name", b.name, "--addr", b.addr())
    b.ok("peer", "add", a.id, "--name", a.name, "--addr", a.addr())


def setup_pair(devices, tmp_path, folder_id=FOLDER):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    pair_up(a, b)
    fa, fb = tmp_path / "A" / folder_id, tmp_path / "B" / folder_id
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    return a, b, fa, fb


def add_folders(a, b, fa, fb, folder_id=FOLDER):
    a.ok("folder", "add", str(fa), "--id", folder_id, "--share", b.id)
    b.ok("folder", "add", str(fb), "--id", folder_id, "--share", a.id)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return h.hexdigest()
            h.update(block)


def snapshot(root):
    """{relpath: (kind, mode, mtime_ns, digest or link target)} for everything
    under root except the .landropic marker. Directories carry their mode but
    no mtime; symlinks carry only their target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [n for n in dirnames if n != ".landropic"]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None, None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, sha256_file(p))
    return out


def safe_snapshot(root):
    try:
        return snapshot(root)
    except (FileNotFoundError, NotADirectoryError):  # changed under the walk: not settled
        return None


def equal_to(root, expected):
    """A predicate for wait_for: root's snapshot equals expected."""
    def check():
        return safe_snapshot(root) == expected
    return check


def diff(a, b):
    """A short human description of how two snapshots differ (for failures)."""
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k}: {a.get(k)} != {b.get(k)}")
    return "\n".join(lines[:30])


def folder_errors(dev):
    return dev.ok("status", "--json").json()["folders"][0]["errors"]


def write_file(path, data, mode=None, mtime_ns=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


FILE_MODES = (0o644, 0o600, 0o755, 0o444, 0o700, 0o640, 0o400, 0o751)
DIR_MODES = (0o755, 0o700, 0o750, 0o711)


def make_big_tree(root, rnd):
    """300 regular files over several levels, empty directories, symlinks of
    every flavour, varied modes, sizes and sub-second mtimes. Returns the
    relative paths of the regular files."""
    dirs = [""]
    for top in range(5):
        t = f"d{top}"
        dirs.append(t)
        for mid in range(3):
            m = f"{t}/m{mid}"
            dirs.append(m)
            if mid == 0:
                dirs.append(f"{m}/deep")
                dirs.append(f"{m}/deep/deeper")
    for i, d in enumerate(dirs[1:]):
        os.mkdir(root / d)
    files = []
    for i in range(300):
        d = dirs[i % len(dirs)]
        name = f"f{i:03d}.dat" if i % 7 else f"name with space {i}.txt"
        if i % 50 == 3:
            name = f".hidden{i}"
        if i % 61 == 5:
            name = f"\u00e9t\u00e9-{i}.txt"  # non-ASCII UTF-8
        rel = f"{d}/{name}" if d else name
        if i == 0:
            data = b""
        elif i == 1:
            data = b"x"
        elif i in (2, 150):
            data = os.urandom((3 << 20) + i)  # a few MiB, not a multiple of anything
        elif i % 10 == 0:
            data = b""
        else:
            data = os.urandom(rnd.randint(2, 20000))
        # Sub-second mtimes, all different; a few outside the usual range.
        mtime = 1_600_000_000_000_000_000 + i * 1_000_003_777 + rnd.randint(1, 999_999_999)
        if i == 4:
            mtime = 1_000_000_000_000_000_001  # 2001, 1 ns past the second
        if i == 5:
            mtime = 4_102_444_800_999_999_999  # 2100, last ns of the second
        write_file(root / rel, data, FILE_MODES[i % len(FILE_MODES)], mtime)
        files.append(rel)
    # Empty directories, one a chain of empties.
    for e in ("empty", "d1/empty", "d2/m1/e1/e2/e3"):
        os.makedirs(root / e)
    # Directory modes (the root of the folder keeps its own).
    for i, d in enumerate(dirs[1:]):
        os.chmod(root / d, DIR_MODES[i % len(DIR_MODES)])
    os.chmod(root / "empty", 0o700)
    # Symlinks: relative, absolute, dangling, to a directory, to a symlink,
    # up and out of a subdirectory; none is ever followed.
    os.symlink(files[7], root / "rel-link")
    os.symlink("../../" + files[10], root / "d0" / "m1" / "up-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("/nonexistent/landropic/target", root / "abs-dangling")
    os.symlink("does/not/exist", root / "d3" / "dangling")
    os.symlink("d4", root / "dir-link")
    os.symlink("rel-link", root / "link-to-link")
    os.symlink("../../../outside-the-folder", root / "d1" / "escaping-link")
    return files


def wait_both(fa, fb, expected, timeout=60, what="trees equal"):
    try:
        wait_for(lambda: safe_snapshot(fa) == expected and safe_snapshot(fb) == expected,
                 timeout=timeout, interval=0.3, what=what)
    except AssertionError:
        sa, sb = safe_snapshot(fa) or {}, safe_snapshot(fb) or {}
        raise AssertionError(f"{what}: A vs expected:\n{diff(sa, expected)}\n"
                             f"B vs expected:\n{diff(sb, expected)}")


def test_big_tree_syncs_identical_then_both_sides_converge(devices, tmp_path):
    rnd = random.Random(606)
    a, b, fa, fb = setup_pair(devices, tmp_path)
    files = make_big_tree(fa, rnd)
    add_folders(a, b, fa, fb)
    expected = snapshot(fa)
    assert sum(1 for v in expected.values() if v[0] == "file") == 300
    a.start()
    b.start()
    wait_both(fa, fb, expected, timeout=90, what="A's tree on B")

    # Spot checks of what the snapshot comparison covers, so a weaker snapshot
    # could not pass by accident.
    sb = snapshot(fb)
    assert sb[files[4]][2] == 1_000_000_000_000_000_001
    assert sb[files[5]][2] == 4_102_444_800_999_999_999
    assert {sb[f][1] for f in files} == set(FILE_MODES)
    assert sb["abs-link"] == ("link", None, None, "/etc/hostname")
    assert sb["dir-link"] == ("link", None, None, "d4")
    assert os.path.islink(fb / "dir-link") and os.path.islink(fb / "d1" / "escaping-link")
    assert sb["d2/m1/e1/e2/e3"][0] == "dir" and sb["empty"] == ("dir", 0o700, None, None)
    assert sb[files[0]][3] == hashlib.sha256(b"").hexdigest()
    assert sorted(os.listdir(tmp_path / "B")) == [FOLDER]
    assert not os.path.lexists(tmp_path / "outside-the-folder")
    for dev in (a, b):
        assert dev.ok("sync", "--wait", "--timeout", "30").rc == 0

    # Changes on both sides at once, none on the same path except one: A edits
    # a file inside the directory B renames (modify beats delete: the edit
    # must survive at its old path, the renamed copy keeps the old content).
    model = dict(expected)
    a_edits = [f for f in files if f.startswith("d0/") and not f.startswith("d0/m")][:6]
    for n, f in enumerate(a_edits):
        mt = 1_700_000_000_123_456_000 + n
        write_file(fa / f, b"edited on alice %d\n" % n * (n + 1), None, mt)
        model[f] = ("file", model[f][1], mt, sha256_file(fa / f))
    # A 3 MiB file changed in the middle only.
    big = files[2]
    with open(fa / big, "r+b") as fh:
        fh.seek(1 << 20)
        fh.write(b"\xee" * 4096)
    os.utime(fa / big, ns=(1_700_000_000_999_999_999,) * 2)
    model[big] = ("file", model[big][1], 1_700_000_000_999_999_999, sha256_file(fa / big))
    a_edits.append(big)
    os.chmod(fa / files[13], 0o600)  # mode-only change
    model[files[13]] = ("file", 0o600) + model[files[13]][2:]
    os.utime(fa / files[14], ns=(1_650_000_000_000_000_007,) * 2)  # mtime-only change
    model[files[14]] = model[files[14]][:2] + (1_650_000_000_000_000_007,) + model[files[14]][3:]
    write_file(fa / "d3" / "added-on-a.txt", b"new on a\n", 0o640, 1_700_000_001_000_000_001)
    model["d3/added-on-a.txt"] = ("file", 0o640, 1_700_000_001_000_000_001,
                                  hashlib.sha256(b"new on a\n").hexdigest())
    os.unlink(fa / "rel-link")
    del model["rel-link"]

    b_deletes = [f for f in files if f.startswith("d1/m")][:8]
    for f in b_deletes:
        os.unlink(fb / f)
        del model[f]
    # A whole empty-directory chain deleted on B.
    for e in ("d2/m1/e1/e2/e3", "d2/m1/e1/e2", "d2/m1/e1"):
        os.rmdir(fb / e)
        del model[e]
    # B renames d4 (files, a subdirectory, and the target of dir-link) to d4-renamed.
    victim = next(f for f in files if f.startswith("d4/") and f.count("/") == 1)
    mt = 1_700_000_002_000_000_003
    write_file(fa / victim, b"alice edited this while bob moved it\n", None, mt)
    victim_digest = sha256_file(fa / victim)
    os.rename(fb / "d4", fb / "d4-renamed")
    for k in [k for k in model if k == "d4" or k.startswith("d4/")]:
        model["d4-renamed" + k[2:]] = model.pop(k)
    # Modify beats delete: the edited file comes back at its old path, with
    # its parent directory (mode from the record A still has).
    model["d4"] = expected["d4"]
    model[victim] = ("file", expected[victim][1], mt, victim_digest)
    write_file(fb / "d0" / "added-on-b.bin", b"b" * 70000, 0o600, 1_700_000_003_000_000_000)
    model["d0/added-on-b.bin"] = ("file", 0o600, 1_700_000_003_000_000_000,
                                  hashlib.sha256(b"b" * 70000).hexdigest())
    edited_on_b = files[3]
    write_file(fb / edited_on_b, b"bob's edit\n", 0o644, 1_700_000_004_000_000_000)
    model[edited_on_b] = ("file", 0o644, 1_700_000_004_000_000_000,
                          hashlib.sha256(b"bob's edit\n").hexdigest())
    # The scenario touches disjoint paths except for the victim.
    a_side = set(a_edits) | {files[13], files[14], "rel-link"}
    assert not a_side & set(b_deletes) and edited_on_b not in a_side
    assert not any(p.startswith("d4/") for p in a_side)

    a.ok("scan")
    b.ok("scan")
    wait_both(fa, fb, model, timeout=90, what="both sides' changes converged")
    for dev in (a, b):
        r = dev.run("sync", "--wait", "--timeout", "30")
        assert r.rc == 0, f"{dev.name}: {r}; errors: {folder_errors(a)} / {folder_errors(b)}"
        f = dev.ok("status", "--json").json()["folders"][0]
        assert f["need_files"] == 0 and f["state"] == "idle", f
    # Nothing deleted by B is resurrected, and nothing is left outside.
    for f in b_deletes:
        assert not os.path.lexists(fa / f)
    assert sorted(os.listdir(tmp_path / "A")) == [FOLDER]
    assert sorted(os.listdir(tmp_path / "B")) == [FOLDER]


def digests_under(root):
    out = set()
    for dirpath, _, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out.add(sha256_file(p))
    return out


def test_file_dir_symlink_type_changes_propagate(devices, tmp_path):
    """Every change of type but directory -> file (see the next test), made on
    A, then changed again on B: symlink -> directory, file -> symlink, ..."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    write_file(fa / "f2d", b"file that becomes a directory\n")
    write_file(fa / "f2l", b"file that becomes a symlink\n")
    (fa / "d2l").mkdir()
    (fa / "d2l" / "sub").mkdir()
    write_file(fa / "d2l" / "sub" / "inner.txt", b"inside d2l\n")
    os.symlink("elsewhere", fa / "l2f")
    os.symlink("f2d", fa / "l2d")
    (fa / "keep").mkdir()
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    start = snapshot(fa)
    wait_both(fa, fb, start, what="initial tree on B")
    replaced = {sha256_file(fa / p) for p in ("f2d", "f2l", "d2l/sub/inner.txt")}

    # Round 1, on A.
    os.unlink(fa / "f2d")
    (fa / "f2d").mkdir()
    write_file(fa / "f2d" / "now-a-dir.txt", b"f2d is a directory now\n")
    os.unlink(fa / "f2l")
    os.symlink("keep", fa / "f2l")
    os.unlink(fa / "d2l" / "sub" / "inner.txt")
    os.rmdir(fa / "d2l" / "sub")
    os.rmdir(fa / "d2l")
    os.symlink("/tmp", fa / "d2l")
    os.unlink(fa / "l2f")
    write_file(fa / "l2f", b"l2f is a file now\n", 0o755)
    os.unlink(fa / "l2d")
    (fa / "l2d").mkdir(mode=0o750)
    os.chmod(fa / "l2d", 0o750)
    write_file(fa / "l2d" / "x", b"inside l2d\n")
    round1 = snapshot(fa)
    a.ok("scan")
    wait_both(fa, fb, round1, what="type changes made on A reached B")
    assert os.path.islink(fb / "d2l") and os.path.isdir(fb / "f2d")
    assert os.listdir("/tmp")  # the link was not followed into, /tmp untouched by us
    # Every version B lost was kept in its versions archive, not destroyed.
    archived = digests_under(fb / ".landropic" / "versions")
    assert replaced <= archived, "replaced versions missing from B's .landropic/versions"

    # Round 2, on B, back the other way.
    for n in os.listdir(fb / "f2d"):
        os.unlink(fb / "f2d" / n)
    os.rmdir(fb / "f2d")
    os.symlink("l2d/x", fb / "f2d")
    os.unlink(fb / "f2l")
    (fb / "f2l").mkdir()
    (fb / "f2l" / "empty-child").mkdir()
    os.unlink(fb / "d2l")
    write_file(fb / "d2l", b"d2l is a file again\n", 0o640)
    os.unlink(fb / "l2d" / "x")
    os.rmdir(fb / "l2d")
    os.symlink("../dangling", fb / "l2d")
    round2 = snapshot(fb)
    b.ok("scan")
    wait_both(fa, fb, round2, what="type changes made on B reached A")
    assert os.path.islink(fa / "f2d") and os.readlink(fa / "f2d") == "l2d/x"
    for dev in (a, b):
        assert dev.ok("sync", "--wait", "--timeout", "30").rc == 0


def d2f_synced(devices, tmp_path):
    """Alice's directory d2f holding one file, synced to bob; both running."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    (fa / "d2f").mkdir()
    write_file(fa / "d2f" / "inner.txt", b"inside d2f\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_both(fa, fb, snapshot(fa), what="initial tree on B")
    return a, b, fa, fb


def d2f_becomes_a_big_file(a, fa, fb, tmp_path):
    """Alice replaces d2f with a 128 MiB file; returns once bob's pull has
    removed his directory for it (the file still in transit)."""
    # Written aside and moved in whole, so alice's scan sees one version.
    with open(tmp_path / "big.part", "wb") as f:
        for _ in range(16):
            f.write(os.urandom(8 << 20))
    os.unlink(fa / "d2f" / "inner.txt")
    os.rmdir(fa / "d2f")
    os.rename(tmp_path / "big.part", fa / "d2f")
    a.ok("scan")
    wait_for(lambda: not os.path.lexists(fb / "d2f"), timeout=60, interval=0.01,
             what="bob's directory removed for alice's file")


def test_directory_replaced_by_file_propagates(devices, tmp_path):
    a, b, fa, fb = d2f_synced(devices, tmp_path)
    os.unlink(fa / "d2f" / "inner.txt")
    os.rmdir(fa / "d2f")
    write_file(fa / "d2f", b"d2f is a file now\n", 0o600)
    a.ok("scan")
    wait_both(fa, fb, snapshot(fa), timeout=10, what="directory -> file on B")
    # One transfer for the new file: a second one for the same path shared
    # the staging file, wrote into it after the first had placed it (a new
    # mtime on B, sent back as a change) and then failed its commit.
    with open(os.path.join(b.home, "landropic.log"), errors="replace") as f:
        log = f.read()
    assert "not applied" not in log, log


def test_scan_while_a_file_replacing_a_directory_is_in_transit(devices, tmp_path):
    """Bob's pull removes his directory to put alice's file in its place, and
    the file is still in transit: a scan of bob's folder then took the
    directory's absence for bob's own deletion (a new version), so the
    file's commit failed ("not applied: the local record changed meanwhile")
    and came back as a modify-delete conflict (an ASan CI run)."""
    a, b, fa, fb = d2f_synced(devices, tmp_path)
    d2f_becomes_a_big_file(a, fa, fb, tmp_path)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        mine = [s for s in b.ok("sessions", "--json").json()["sessions"] if s["path"] == "d2f"]
        assert mine and all(s["state"] in ("pending", "active") for s in mine), mine
        assert not os.path.lexists(fb / "d2f")
        scanned = b.ok("scan", "--json").json()["folders"][0]
        assert scanned["deleted"] == 0, scanned
    finally:
        os.kill(a.pid, signal.SIGCONT)
    wait_both(fa, fb, snapshot(fa), timeout=120, what="directory -> file on B")
    assert a.ok("sync", "--wait", "--timeout", "60").rc == 0
    with open(os.path.join(b.home, "landropic.log"), errors="replace") as f:
        log = f.read()
    # (A "not empty" failure may come first: alice's scan can send the file
    # before inner.txt's deletion, and the directory waits for it.)
    assert "the local record changed meanwhile" not in log and "conflict:" not in log, log


def test_receiver_killed_while_a_file_replaces_its_directory(devices, tmp_path):
    """Bob's pull removed his directory for alice's big file and is killed
    before the file is in place: the restart's scan found the directory gone
    and recorded bob's own deletion, a false modify-delete conflict on both
    devices (black-box round 30). The removal is marked in the index, so the
    restarted transfer just completes."""
    a, b, fa, fb = d2f_synced(devices, tmp_path)
    d2f_becomes_a_big_file(a, fa, fb, tmp_path)
    b.kill()
    assert not os.path.lexists(fb / "d2f")
    b.start()
    wait_both(fa, fb, snapshot(fa), timeout=120, what="directory -> file on B after the restart")
    assert b.ok("sync", "--wait", "--timeout", "60").rc == 0
    for dev in (a, b):
        assert dev.ok("conflicts", "--json").json()["conflicts"] == [], dev.name
        with open(os.path.join(dev.home, "landropic.log"), errors="replace") as f:
            log = f.read()
        assert "conflict:" not in log, log


def test_times_beyond_2262_sync_without_overflow_or_bounce(devices, tmp_path):
    """int64 nanoseconds end at 2262-04-11; ext4 holds dates up to 2446. A
    file, directory and symlink dated 2300 used to overflow the conversion
    (undefined behaviour: the sanitizer build died at its first scan); the
    wrapped value reached the peer, whose file system clamped it to 1901, and
    the peer's scan sent 1901 back as a change, rewriting the origin's date.
    Now the origin keeps its date, the peer gets the last representable
    instant, and neither side sees a change afterwards. Dates before 1970
    keep their exact nanoseconds."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    far = 10_413_792_000  # 2300-01-01T00:00:00Z, in seconds
    last_ns = 2**63 - 1
    write_file(fa / "future.txt", b"from the future\n", 0o644)
    os.utime(fa / "future.txt", (far, far))
    (fa / "futdir").mkdir()
    write_file(fa / "futdir" / "in.txt", b"inside\n", 0o644)
    os.symlink("future.txt", fa / "futlink")
    os.utime(fa / "futlink", (far, far), follow_symlinks=False)
    os.utime(fa / "futdir", (far, far))
    old_ns = -1_234_567_890_123_456_789  # 1930-11-18, with nanoseconds
    write_file(fa / "old.txt", b"from the past\n", 0o644, mtime_ns=old_ns)
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    expected = snapshot(fa)
    expected["future.txt"] = ("file", 0o644, last_ns, expected["future.txt"][3])
    try:
        wait_for(equal_to(fb, expected), timeout=60, interval=0.3, what="far-future file on B")
    except AssertionError:
        raise AssertionError(diff(safe_snapshot(fb) or {}, expected))
    assert os.lstat(fb / "futlink").st_mtime_ns == last_ns
    assert os.lstat(fb / "old.txt").st_mtime_ns == old_ns
    # Both sides rescan: nothing is a change, the origin's dates stay put.
    for dev in (a, b):
        dev.ok("scan")
    b.ok("sync", "--wait", "--timeout", "20")
    a.ok("sync", "--wait", "--timeout", "20")
    assert os.stat(fa / "future.txt").st_mtime_ns == far * 10**9
    assert os.lstat(fa / "futlink").st_mtime_ns == far * 10**9
    assert os.stat(fb / "future.txt").st_mtime_ns == last_ns
    assert folder_errors(a) == [] and folder_errors(b) == []
    for root in (fa, fb):
        assert not [p for p in snapshot(root) if "sync-conflict" in p], snapshot(root)
