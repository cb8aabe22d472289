"""Live watching end to end: two daemons keep a folder in sync with no `scan`
or `sync` command; an editor-style save (write a temp file, rename it over)
arrives as one version, and the temp file is never indexed or sent."""
import fcntl
import os
import signal
import sqlite3
import statistics
import time

import pytest
from conftest import free_udp_port, wait_for


def pair_up(a, b):
    a.ok("peer", "add", b.id, "--name", b.name, "--addr", b.addr())
    b.ok("peer", "add", a.id, "--name", a.name, "--addr", a.addr())


def setup_running_pair(devices, tmp_path):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    pair_up(a, b)
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    (fa / "seed.txt").write_bytes(b"seed\n")
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    a.start()
    b.start()
    wait_for(lambda: has(fb / "seed.txt", b"seed\n"), timeout=60, interval=0.1,
             what="initial sync")
    # Both sides settled (first scans and index exchange done) before timing anything.
    for d in (a, b):
        assert d.ok("sync", "--wait", "--timeout", "30").rc == 0
    return a, b, fa, fb


def has(path, data):
    try:
        with open(path, "rb") as f:
            return f.read() == data
    except OSError:
        return False


def db_query(dev, sql, *args):
    con = sqlite3.connect(f"file:{dev.home}/index.db?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def max_seq(dev):
    return db_query(dev, "SELECT max_seq FROM folders WHERE name = ?", "docs")[0][0]


def indexed_paths(dev):
    return {bytes(r[0]).decode() for r in db_query(
        dev, "SELECT path FROM files f JOIN folders d ON f.folder = d.id WHERE d.name = ?",
        "docs")}


def test_live_change_reaches_peer_without_command(devices, tmp_path):
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    latencies = []
    for i in range(7):
        data = f"live edit {i}\n".encode() * (i + 1)
        t0 = time.monotonic()
        (fa / f"note{i}.txt").write_bytes(data)
        wait_for(lambda: has(fb / f"note{i}.txt", data), timeout=10, interval=0.005,
                 what=f"note{i}.txt on B")
        latencies.append(time.monotonic() - t0)
        time.sleep(0.3)  # separate samples: each one is a fresh save
    p50 = statistics.median(latencies)
    print(f"live change-to-visible on peer: p50={p50 * 1000:.0f} ms "
          f"min={min(latencies) * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms "
          f"(n={len(latencies)})")
    assert max(latencies) < 10

    # A new directory with a file in it (the watch on it is added on the fly),
    # then a delete, both the other way round (B to A).
    (fb / "newdir").mkdir()
    (fb / "newdir" / "inner.txt").write_bytes(b"inner\n")
    wait_for(lambda: has(fa / "newdir" / "inner.txt", b"inner\n"), timeout=10, interval=0.02,
             what="B's new directory on A")
    time.sleep(0.3)
    (fb / "newdir" / "second.txt").write_bytes(b"second\n")
    wait_for(lambda: has(fa / "newdir" / "second.txt", b"second\n"), timeout=10,
             interval=0.02, what="a file in B's new directory on A")
    os.unlink(fb / "note0.txt")
    wait_for(lambda: not (fa / "note0.txt").exists(), timeout=10, interval=0.02,
             what="B's delete on A")


def test_save_while_a_peers_changes_arrive_is_not_held_back(devices, tmp_path):
    """While the daemon writes a peer's changes into the folder, the change
    scan is held back (its own writes need no scan). A user's save reported
    among them was held too: up to 10 s while bob kept editing, long enough
    for alternating edits of one file to make conflict copies (black-box
    round 25: 6 of 10 rounds). The watcher now tells the daemon's writes from
    the user's (path, inode and ctime) and never holds the user's."""
    import threading
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    stop = threading.Event()

    def stream():
        for i in range(100):  # bounded: about 40 s at most
            if stop.wait(0.4):
                return
            (fb / "stream.txt").write_bytes(f"{i}\n".encode())

    t = threading.Thread(target=stream)
    t.start()
    try:
        wait_for(lambda: (fa / "stream.txt").exists(), timeout=30, interval=0.05,
                 what="bob's stream arriving")
        time.sleep(1)
        for k in range(3):
            t0 = time.monotonic()
            (fa / f"X{k}.txt").write_bytes(b"alice's save\n")
            wait_for(lambda: has(fb / f"X{k}.txt", b"alice's save\n"), timeout=30,
                     interval=0.05, what=f"X{k}.txt on bob")
            took = time.monotonic() - t0
            # Held, it took 8.3-10.3 s; unheld about 0.16 s (a loaded
            # machine may add a few seconds, never the hold's 10).
            assert took < 5, f"X{k}.txt reached bob after {took:.1f} s"
        # In a directory bob just made: reported whole by the watcher, it was
        # taken for ours and held the save 9-10 s (black-box round 25b); and
        # when the save came before the daemon noted the directory's ctime
        # (4 of 6 runs of 25 saves on a loaded ASan build).
        for k in range(6):
            (fb / f"nd{k}").mkdir()
            (fb / f"nd{k}" / "x.txt").write_bytes(b"bob\n")
            wait_for(lambda: (fa / f"nd{k}" / "x.txt").exists(), timeout=30, interval=0.02,
                     what=f"nd{k} on alice")
            t0 = time.monotonic()
            (fa / f"nd{k}" / "new.txt").write_bytes(b"alice\n")
            wait_for(lambda: has(fb / f"nd{k}" / "new.txt", b"alice\n"), timeout=30,
                     interval=0.05, what=f"nd{k}/new.txt on bob")
            took = time.monotonic() - t0
            assert took < 5, f"nd{k}/new.txt reached bob after {took:.1f} s"
        for i in range(6):  # one file, edited in turn, each after the other's text arrived
            (fa / "turn.txt").write_bytes(f"alice {i}\n".encode())
            wait_for(lambda: has(fb / "turn.txt", f"alice {i}\n".encode()), timeout=30,
                     interval=0.05, what="alice's turn on bob")
            (fb / "turn.txt").write_bytes(f"bob {i}\n".encode())
            wait_for(lambda: has(fa / "turn.txt", f"bob {i}\n".encode()), timeout=30,
                     interval=0.05, what="bob's turn on alice")
    finally:
        stop.set()
        t.join()
    for d in (a, b):
        assert d.ok("sync", "--wait", "--timeout", "60").rc == 0
    copies = [n for f in (fa, fb) for n in os.listdir(f) if "sync-conflict" in n]
    assert copies == [], copies


def test_editor_save_is_one_version(devices, tmp_path):
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    (fa / "doc.txt").write_bytes(b"first draft\n")
    wait_for(lambda: has(fb / "doc.txt", b"first draft\n"), timeout=10, interval=0.02,
             what="doc.txt on B")
    for d in (a, b):
        assert d.ok("sync", "--wait", "--timeout", "30").rc == 0
    seq_a, seq_b = max_seq(a), max_seq(b)

    # What editors do on save: write everything to a temp file, then rename it over.
    final = b"second draft, saved the careful way\n" * 100
    tmp = fa / ".doc.txt.swp"
    with open(tmp, "wb") as f:
        for k in range(0, len(final), 512):
            f.write(final[k:k + 512])
            f.flush()
    os.rename(tmp, fa / "doc.txt")
    wait_for(lambda: has(fb / "doc.txt", final), timeout=10, interval=0.02,
             what="the saved doc.txt on B")
    for d in (a, b):
        assert d.ok("sync", "--wait", "--timeout", "30").rc == 0
    time.sleep(0.5)  # any late second scan would have happened by now

    # One new version on each side, and the temp file was never indexed.
    assert max_seq(a) - seq_a == 1
    assert max_seq(b) - seq_b == 1
    assert ".doc.txt.swp" not in indexed_paths(a)
    assert ".doc.txt.swp" not in indexed_paths(b)
    assert not os.path.lexists(fb / ".doc.txt.swp")


QUEUED = "/proc/sys/fs/inotify/max_queued_events"


def test_queue_overflow_falls_back_to_rescan(devices, tmp_path):
    """A's inotify queue holds 16 events (lowered only while A starts: the
    size is fixed when the descriptor is created); 300 new files overflow it,
    the watcher asks for a full rescan, and every file still reaches B."""
    if os.geteuid() != 0 or not os.access(QUEUED, os.W_OK):
        pytest.skip("needs root to lower fs.inotify.max_queued_events")
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port, b.port = free_udp_port(), free_udp_port()
    pair_up(a, b)
    fa, fb = tmp_path / "A" / "docs", tmp_path / "B" / "docs"
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    a.ok("folder", "add", str(fa), "--id", "docs", "--share", b.id)
    b.ok("folder", "add", str(fb), "--id", "docs", "--share", a.id)
    # Serialised with tests/unit/test_watch.c, so that neither saves the other's
    # lowered value as the one to restore.
    with open("/tmp/landropic-inotify-sysctl.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(QUEUED) as f:
            old = f.read().strip()
        if int(old) < 1024:  # left by a crashed run, not chosen by the admin
            old = "16384"
        try:
            with open(QUEUED, "w") as f:
                f.write("16")
            a.start()
        finally:
            with open(QUEUED, "w") as f:
                f.write(old)
    b.start()
    for d in (a, b):
        assert d.ok("sync", "--wait", "--timeout", "30").rc == 0
    # A stopped daemon reads nothing, so the 16-event queue overflows for sure
    # (a running one may keep up with the writer and make this test flaky).
    os.kill(a.pid, signal.SIGSTOP)
    try:
        for i in range(300):
            (fa / f"burst{i:03d}").write_bytes(b"x" * i)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    wait_for(lambda: all(has(fb / f"burst{i:03d}", b"x" * i) for i in range(300)), timeout=30,
             interval=0.1, what="300 burst files on B")
    with open(os.path.join(a.home, "landropic.log")) as f:
        log = f.read()
    assert "inotify queue overflowed" in log and "fs.inotify.max_queued_events" in log
    assert "full rescan: inotify queue overflow" in log


def marker_goes_peer_keeps_all(a, fa, fb, tmp_path, names, logged):
    """A's marker is moved away: A's folder goes to error, B still has every
    one of `names` 3 s later, and A's log says `logged`."""
    os.rename(fa / ".landropic", tmp_path / "marker-away")
    wait_for(lambda: a.ok("status", "--json").json()["folders"][0]["state"] == "error",
             timeout=15, interval=0.2, what="A's folder in error")
    time.sleep(3)
    gone = [n for n in names if not has(fb / n, n.encode())]
    assert not gone, f"{len(gone)} files deleted on B, first {gone[:3]}"
    with open(os.path.join(a.home, "landropic.log"), errors="replace") as f:
        assert logged in f.read()


def test_folder_deleted_whole_while_running_deletes_nothing_on_the_peer(devices, tmp_path):
    """`rm -rf` of a watched folder empties it before it reaches the marker:
    a scan in between saw every file gone with the marker still there, and
    the peer deleted all of them (black-box round 26: 5005 files, the
    marker outlived the rm because the daemon wrote into it meanwhile). Most
    of a folder gone in one scan is believed only if the marker is still
    there a moment later; here it goes 1 s after the files."""
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    names = [f"f{i:03d}.txt" for i in range(300)]
    for n in names:
        (fa / n).write_bytes(n.encode())
    assert a.ok("sync", "--wait", "--timeout", "60").rc == 0
    wait_for(lambda: all(has(fb / n, n.encode()) for n in names), timeout=60, interval=0.2,
             what="300 files on B")
    for n in names + ["seed.txt"]:
        os.unlink(fa / n)
    time.sleep(1.0)  # the watcher's scan runs meanwhile
    marker_goes_peer_keeps_all(a, fa, fb, tmp_path, names, "left: the marker is checked again")


def test_folder_deleted_slowly_holds_until_the_deletion_is_over(devices, tmp_path):
    """An `rm -rf` of a large tree takes longer than the 2 s hold to reach
    the marker: the scan that walked it with most of the folder gone saw
    the marker still there after 2 s and recorded the deletions, and the
    peer deleted them. The hold now lasts while something is still
    deleting (free inodes rising, the root changing): here 800 of 1000
    files go at once, the rest one every 25 ms (5 s), then the marker."""
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    names = [f"d{i // 100}/f{i:04d}.txt" for i in range(1000)]
    for n in names:
        (fa / n).parent.mkdir(exist_ok=True)
        (fa / n).write_bytes(n.encode())
    assert a.ok("sync", "--wait", "--timeout", "60").rc == 0
    wait_for(lambda: all(has(fb / n, n.encode()) for n in names), timeout=60, interval=0.2,
             what="1000 files on B")
    for n in names[:800] + ["seed.txt"]:
        os.unlink(fa / n)
    for n in names[800:]:
        os.unlink(fa / n)
        time.sleep(0.025)
    for i in range(10):
        os.rmdir(fa / f"d{i}")
    marker_goes_peer_keeps_all(a, fa, fb, tmp_path, names, "something is still deleting: deletions held")


def rm_depth_first(fa, names, at_once, every):
    """Unlink `names` in order, the first `at_once` of them at once and the
    rest one every `every` seconds, removing each directory as soon as its
    last file is gone (as `rm -rf` does) and then every directory left."""
    left = {}
    for n in names:
        for p in (fa / n).relative_to(fa).parents:
            if str(p) != ".":
                left[p] = left.get(p, 0) + 1
    for i, n in enumerate(names):
        os.unlink(fa / n)
        for p in (fa / n).relative_to(fa).parents:
            if str(p) == ".":
                continue
            left[p] -= 1
            if left[p] == 0:
                os.rmdir(fa / p)
        if i >= at_once:
            time.sleep(every)


@pytest.mark.parametrize("layout", ["flat", "deep"])
def test_a_scan_in_the_middle_of_an_rm_holds_its_deletions(devices, tmp_path, layout):
    """The watcher's scan (at most 1 s after the first event) can walk the
    folder while an `rm -rf` has removed less than half of it: that part
    was recorded at once and the peer deleted it (CI, under load: 379 and
    488 of 1000 files). Deletions seen while the folder is still changing
    are held like a mass deletion: here 300 of 1000 files go at once and
    the rest one every 10 ms (7 s), then the marker. `deep` puts them all
    under one top-level directory, three levels down, whose own times
    change only once a second: the rm is seen in the directories it
    empties."""
    a, b, fa, fb = setup_running_pair(devices, tmp_path)
    if layout == "flat":
        names = [f"d{i // 100}/f{i:04d}.txt" for i in range(1000)]
    else:
        names = [f"top/a{i // 100}/b{i // 10 % 10}/f{i:04d}.txt" for i in range(1000)]
    for n in names:
        (fa / n).parent.mkdir(parents=True, exist_ok=True)
        (fa / n).write_bytes(n.encode())
    assert a.ok("sync", "--wait", "--timeout", "60").rc == 0
    wait_for(lambda: all(has(fb / n, n.encode()) for n in names), timeout=60, interval=0.2,
             what="1000 files on B")
    os.unlink(fa / "seed.txt")
    rm_depth_first(fa, names, 300, 0.01)
    # Either hold: a scan that started late saw most of the folder gone.
    marker_goes_peer_keeps_all(a, fa, fb, tmp_path, names, "the marker is checked again")


def test_marker_removed_seen_live(devices, tmp_path):
    """Moving the folder's .landropic away is noticed by the live watcher: the
    folder goes to error without a command (it showed idle and in sync until
    something else made it scan), deletes nothing on the peer, and recovers
    when the marker is back."""
    a, b, fa, fb = setup_running_pair(devices, tmp_path)

    def state(dev):
        return dev.ok("status", "--json").json()["folders"][0]["state"]
    away = tmp_path / "marker-away"
    os.rename(fa / ".landropic", away)
    wait_for(lambda: state(a) == "error", timeout=15, interval=0.2,
             what="the folder in error after its marker went away")
    assert has(fb / "seed.txt", b"seed\n")
    os.rename(away, fa / ".landropic")
    wait_for(lambda: state(a) != "error", timeout=15, interval=0.2,
             what="the folder usable again once its marker is back")
    assert has(fb / "seed.txt", b"seed\n")
