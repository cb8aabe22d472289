"""Names that clash only by case or Unicode normalisation (issue #6), on a
real folding file system: B's folder lives on foldfs (tests/tools/foldfs.c,
a FUSE mirror whose lookups fold case and NFC/NFD like an ext4 casefold
directory; this kernel has no CONFIG_UNICODE, docs/testing.md), A's on an
ordinary case-sensitive directory.

What must hold: B keeps one spelling, reports the other as a failing item
(`status` errors, `events`) and once as a `structural` / `case-clash`
entry in `conflicts --json`, retries it with the usual backoff, never
puts a file into the other spelling's directory, and nothing is deleted
or replaced on either side. The last test tries the real thing: an ext4
image made with `mkfs.ext4 -O casefold`, loop-mounted, the folder marked
`chattr +F`; it skips where the kernel cannot mount it."""
import json
import os
import subprocess
import time
import unicodedata

import pytest

from conftest import BIN, free_udp_port, tool_bin, wait_for
from test_04_sync import add_folders, pair_up

FOLDFS = tool_bin("foldfs")
NFC = unicodedata.normalize("NFC", "caf\u00e9.txt")
NFD = unicodedata.normalize("NFD", "caf\u00e9.txt")


def _unmount(mnt, lazy_cmd):
    for _ in range(50):
        if not os.path.ismount(mnt):
            return
        r = subprocess.run(lazy_cmd[:-1] + [str(mnt)], capture_output=True, timeout=20)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(lazy_cmd, capture_output=True, timeout=20)


@pytest.fixture
def foldmount(tmp_path):
    """(backing dir, mount point) of a fresh foldfs. Request it before
    `devices` so the daemons stop before it is unmounted."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    if not os.access(FOLDFS, os.X_OK):
        pytest.skip(f"foldfs not built ({FOLDFS}): needs libfuse3-dev")
    back, mnt = tmp_path / "fold-back", tmp_path / "fold-mnt"
    back.mkdir()
    mnt.mkdir()
    r = subprocess.run([FOLDFS, str(back), str(mnt)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"foldfs could not mount: {r.stderr.strip()}")
    try:
        wait_for(lambda: os.path.ismount(mnt), timeout=10, what="foldfs mounted")
        yield back, mnt
    finally:
        _unmount(mnt, ["fusermount3", "-u", "-z", str(mnt)])


def make_pair(devices, tmp_path, fb):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    pair_up(a, b)
    fa = tmp_path / "A" / "docs"
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    return a, b, fa


def status(dev):
    return dev.ok("status", "--json").json()["folders"][0]


def clashes(dev):
    return [c for c in dev.ok("conflicts", "--json").json()["conflicts"]
            if c.get("detail") == "case-clash"]


def names(d):
    """Entries of a directory as stored (bytes decoded as UTF-8)."""
    return sorted(os.listdir(d))


def a_tree(fa):
    out = {}
    for dirpath, dirnames, filenames in os.walk(fa):
        if dirpath == str(fa):
            dirnames[:] = [n for n in dirnames if n != ".landropic"]
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, fa)] = open(p, "rb").read()
    return out


A_FILES = {
    "Readme.txt": b"mixed case\n",
    "README.txt": b"upper case, different\n",
    "Docs/a.txt": b"in Docs\n",
    "docs/b.txt": b"in docs\n",
    NFC: b"composed\n",
    NFD: b"decomposed\n",
    "plain.txt": b"no clash\n",
}


def test_clashes_reported_nothing_lost(foldmount, devices, tmp_path):
    back, mnt = foldmount
    a, b, fa = make_pair(devices, tmp_path, mnt / "docs")
    for rel, data in A_FILES.items():
        (fa / rel).parent.mkdir(parents=True, exist_ok=True)
        (fa / rel).write_bytes(data)
    assert len(os.listdir(fa)) == 7  # A is case-sensitive: all seven names
    add_folders(a, b, fa, mnt / "docs")
    bb = back / "docs"  # what B's file system really stores
    b.start()
    ev = subprocess.Popen([BIN, "--home", b.home, "events", "--json"], stdout=subprocess.PIPE,
                          text=True)
    try:
        time.sleep(0.3)
        a.start()
        wait_for(lambda: (bb / "plain.txt").exists(), timeout=60, what="B's first files")

        # Four failing items: the second readme, the second directory and the file
        # inside it (never put into the other spelling), the second café.
        def four_errors():
            e = status(b)["errors"]
            return len(e) == 4 and e
        errs = wait_for(four_errors, timeout=60, interval=0.3, what="B lists the clashes")
        for e in errs:
            assert "clashes with existing" in e["error"], e
            assert "ignores case or Unicode normalisation" in e["error"], e

        # B holds exactly one spelling of each, with the content of that spelling on A.
        top = names(bb)
        readmes = [n for n in top if n.lower() == "readme.txt"]
        dirs = [n for n in top if n.lower() == "docs"]
        cafes = [n for n in top if unicodedata.normalize("NFC", n) == NFC]
        assert len(readmes) == 1 and len(dirs) == 1 and len(cafes) == 1, top
        assert sorted(top) == sorted(readmes + dirs + cafes + [".landropic", "plain.txt"])
        for n in readmes + cafes + ["plain.txt"]:
            assert (bb / n).read_bytes() == A_FILES[n], n
        d = dirs[0]
        inside = names(bb / d)
        want = "a.txt" if d == "Docs" else "b.txt"
        assert inside == [want], inside  # nothing landed in the wrong directory
        assert (bb / d / want).read_bytes() == A_FILES[f"{d}/{want}"]
        losers = {next(n for n in ("Readme.txt", "README.txt") if n not in readmes),
                  next(n for n in ("Docs", "docs") if n not in dirs),
                  next(n for n in (NFC, NFD) if n not in cafes)}
        other_dir = next(n for n in ("Docs", "docs") if n not in dirs)
        other_file = "a.txt" if other_dir == "Docs" else "b.txt"
        assert {e["path"] for e in errs} == losers | {f"{other_dir}/{other_file}"}

        # The audit trail: one structural case-clash per pair of names, with both names.
        lst = wait_for(lambda: len(clashes(b)) == 3 and clashes(b), timeout=30,
                       what="three case-clash entries")
        for c in lst:
            assert c["type"] == "structural" and c["detail"] == "case-clash", c
            assert c["resolution"] == "not-applied" and c["winner"] == "local", c
            assert b.id in c["devices"] and a.id in c["devices"], c
        pairs = {(c["path"], c["kept_path"]) for c in lst}
        assert pairs == {(losers_of(losers, "readme"), readmes[0]), (other_dir, d),
                         (losers_of(losers, "cafe"), cafes[0])}, pairs

        # Retried with the folder's backoff (5 s, doubling), not at full speed once
        # the first rounds are over, and recorded once however often it is retried.
        time.sleep(1)
        before = {e["path"]: e["attempts"] for e in status(b)["errors"]}
        wait_for(lambda: all(e["attempts"] > before[e["path"]] for e in status(b)["errors"]),
                 timeout=40, interval=0.5, what="a retry after the backoff")
        t0 = time.time()
        before = {e["path"]: e["attempts"] for e in status(b)["errors"]}
        time.sleep(3)
        grew = max(e["attempts"] - before[e["path"]] for e in status(b)["errors"])
        assert grew <= 2, (grew, time.time() - t0)
        assert len(clashes(b)) == 3

        # Nothing deleted or replaced anywhere: A still has all seven, intact, after
        # B rescans and both sync; B archived nothing; A records no clash.
        b.ok("scan")
        a.ok("sync")
        b.ok("sync")
        time.sleep(2)
        assert a_tree(fa) == A_FILES
        assert b.ok("versions", "docs", "--json").json()["versions"] == []
        assert clashes(a) == [] and status(a)["errors"] == []
        assert (bb / d / want).read_bytes() == A_FILES[f"{d}/{want}"]
        time.sleep(0.5)
    finally:
        ev.terminate()
        out, _ = ev.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    failed = [e for e in events if e["type"] == "item_failed" and "clashes" in e.get("error", "")]
    assert {e["path"] for e in failed} >= losers, failed
    cev = [e for e in events if e["type"] == "conflict"]
    assert len(cev) == 3 and all(e["conflict"]["detail"] == "case-clash" for e in cev), cev
    log = open(os.path.join(b.home, "landropic.log")).read()
    assert "detail=case-clash" in log


def losers_of(losers, kind):
    for n in losers:
        if kind == "readme" and n.lower() == "readme.txt":
            return n
        if kind == "cafe" and unicodedata.normalize("NFC", n) == NFC:
            return n
    raise AssertionError(f"no {kind} among {losers}")


def test_case_only_rename(foldmount, devices, tmp_path):
    """A renames a.txt -> A.txt (a delete and a create to its peers). On B the
    create first meets a.txt (a clash, nothing changed), the delete then moves
    a.txt into the archive, and the next round puts A.txt in place (from the
    staging file the clash left): no data lost, both end with A.txt."""
    back, mnt = foldmount
    a, b, fa = make_pair(devices, tmp_path, mnt / "docs")
    (fa / "a.txt").write_bytes(b"renamed by case only\n")
    (fa / "keep.txt").write_bytes(b"keep\n")
    add_folders(a, b, fa, mnt / "docs")
    bb = back / "docs"
    a.start()
    b.start()
    wait_for(lambda: (bb / "a.txt").exists() and (bb / "keep.txt").exists(), timeout=60,
             what="first sync")
    assert b.ok("sync", "--wait", "--timeout", "30").rc == 0
    os.rename(fa / "a.txt", fa / "A.txt")
    a.ok("scan")

    def settled():
        return names(bb) == [".landropic", "A.txt", "keep.txt"] and status(b)["errors"] == []
    wait_for(settled, timeout=60, interval=0.3, what="A.txt on B, errors cleared")
    assert (bb / "A.txt").read_bytes() == b"renamed by case only\n"
    assert sorted(os.listdir(fa)) == [".landropic", "A.txt", "keep.txt"]
    assert (fa / "A.txt").read_bytes() == b"renamed by case only\n"
    assert b.ok("sync", "--wait", "--timeout", "30").rc == 0
    assert a.ok("sync", "--wait", "--timeout", "30").rc == 0
    # The old spelling was displaced by a peer's change: archived, not destroyed.
    vs = b.ok("versions", "docs", "--json").json()["versions"]
    assert [v["path"] for v in vs] == ["a.txt"], vs


# ---- the real thing: ext4 casefold ------------------------------------------

@pytest.fixture
def casefold_dir(tmp_path):
    """A `chattr +F` directory on a loop-mounted `mkfs.ext4 -O casefold` image."""
    if os.geteuid() != 0:
        pytest.skip("needs root for mount")
    img, mnt = tmp_path / "cf.img", tmp_path / "cf-mnt"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    r = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "casefold", str(img)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"mkfs.ext4 -O casefold failed: {r.stderr.strip()}")
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        k = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
        why = next((ln for ln in reversed(k) if "casefold" in ln or "CONFIG_UNICODE" in ln),
                   r.stderr.strip())
        pytest.skip(f"cannot mount an ext4 casefold image here ({why.strip()}); "
                    "test_clashes_reported_nothing_lost covers it on foldfs")
    try:
        d = mnt / "B"
        d.mkdir()
        r = subprocess.run(["chattr", "+F", str(d)], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            pytest.skip(f"chattr +F failed: {r.stderr.strip()}")
        yield d
    finally:
        _unmount(mnt, ["umount", "-l", str(mnt)])


def test_ext4_casefold(casefold_dir, devices, tmp_path):
    fb = casefold_dir / "docs"
    a, b, fa = make_pair(devices, tmp_path, fb)
    (fa / "Readme.txt").write_bytes(b"mixed case\n")
    (fa / "README.txt").write_bytes(b"upper case, different\n")
    (fa / "plain.txt").write_bytes(b"no clash\n")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    errs = wait_for(lambda: status(b)["errors"], timeout=60, interval=0.3,
                    what="B lists the clash")
    assert len(errs) == 1 and "clashes with existing" in errs[0]["error"], errs
    wait_for(lambda: (fb / "plain.txt").exists(), timeout=30, what="plain.txt on B")
    readmes = [n for n in os.listdir(fb) if n.lower() == "readme.txt"]
    assert len(readmes) == 1 and (fb / readmes[0]).read_bytes() == (fa / readmes[0]).read_bytes()
    lst = wait_for(lambda: clashes(b), timeout=30, what="the case-clash entry")
    assert len(lst) == 1 and lst[0]["type"] == "structural" and lst[0]["kept_path"] == readmes[0]
    b.ok("scan")
    a.ok("sync")
    time.sleep(2)
    assert sorted(os.listdir(fa)) == [".landropic", "README.txt", "Readme.txt", "plain.txt"]
