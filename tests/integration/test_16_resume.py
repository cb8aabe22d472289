"""Resumable transfers under failures, end to end with real daemons (issue #7):

- the receiver crashes at a chosen step (a failpoint compiled into test builds,
  armed with LR_FAILPOINT=NAME:N at daemon start, so the crash is not left to
  timing), restarts, and the folder converges with every file whole;
- a new version of a half-staged file (the sender edited it while the
  receiver was down) reuses the older version's staged chunks;
- a SIGKILL of the receiver at about 35 % of a 400 MiB file costs little
  re-sent data (chunks in the staging file are re-verified, not re-fetched),
  counted at the sender, whose counters survive the receiver's restart;
- a SIGKILL of the sender mid-transfer, then its restart: the transfer ends;
- a link cut between two network namespaces shorter than the idle timeout
  (the connection survives) and longer (it dies; the session carries the
  transfer over the reconnect, no restart);
- a peer serving corrupted chunk data next to an honest one;
- ENOSPC in staging (a small tmpfs; root only).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import tool_bin, wait_for
from test_03_netns import NsDevice, netns_pair  # noqa: F401 (netns_pair is a fixture)
from test_06_sync_tree import add_folders, safe_snapshot, setup_pair, sha256_file, snapshot

MiB = 1 << 20
FOLDER = "tree"


def write_random(path, size, staging=None, seed=None, zero_runs=False):
    """size random bytes at path (through a rename from staging if given, so
    a daemon never sees a half-written file); returns their SHA-256. With
    zero_runs every other 8 MiB block is zeros."""
    h = hashlib.sha256()
    target = path
    if staging is not None:
        path = staging / ("staging-" + path.name)
    with open(path, "wb") as f:
        left = size
        n = 0
        while left:
            n += 1
            block = (bytes(min(left, 8 * MiB)) if zero_runs and n % 2 == 0
                     else os.urandom(min(left, 8 * MiB)))
            h.update(block)
            f.write(block)
            left -= len(block)
    if staging is not None:
        os.replace(path, target)
    return h.hexdigest()


def copy_same(src, dst):
    shutil.copyfile(src, dst)
    st = os.stat(src)
    os.chmod(dst, st.st_mode & 0o7777)
    os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))


def folder_status(dev):
    return dev.ok("status", "--json").json()["folders"][0]


def sessions(dev):
    return dev.ok("sessions", "--json").json()["sessions"]


def log_text(dev):
    try:
        with open(os.path.join(dev.home, "landropic.log"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def start_env(dev, env, *extra):
    """Starts dev's daemon with extra environment variables."""
    r = dev.run("daemon", "--listen", dev.addr(), "--detach", *extra, env=env, timeout=30)
    assert r.rc == 0, f"daemon failed to start: {r}"
    dev.pid = dev.daemon_pid()
    assert dev.pid


def wait_dead(dev, timeout=120, what="daemon death"):
    pid = dev.pid
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or not dev.alive(), timeout=timeout,
             interval=0.05, what=what)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, what="dead daemon reaped")
    dev.pid = None


def sent_to(dev, other):
    return (dev.peer_info(other) or {}).get("bytes_sent", 0)


def received_from(dev, other):
    return (dev.peer_info(other) or {}).get("bytes_received", 0)


def staged_bytes(root):
    tmp = root / ".landropic" / "tmp"
    n = 0
    try:
        for name in os.listdir(tmp):
            try:
                n = max(n, os.lstat(tmp / name).st_blocks * 512)
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return n


def settled_clean(dev, timeout=60):
    assert dev.ok("sync", "--wait", "--timeout", str(timeout)).rc == 0
    wait_for(lambda: not folder_status(dev)["errors"], timeout=30, interval=0.3,
             what=f"status clean: {folder_status(dev)['errors']}")


# --- crashes at failpoints ---------------------------------------------------

BIG = 48 * MiB
# Each point, with the hit that crashes: the commit points at the first
# commit batch; rx_after_write after about a third of the big file's chunks
# (64 KiB on average) are in staging.
POINTS = [("commit_before_barrier", 1), ("commit_before_rename", 1),
          ("commit_before_index", 1), ("rx_after_write", 250)]


@pytest.mark.parametrize("what", ["big", "tree", "small"])
@pytest.mark.parametrize("point,hit", POINTS)
def test_receiver_crash_at_failpoint_converges_whole(devices, tmp_path, point, hit, what):
    """what: "big" changes only the big file (so the first commit batch is
    its own and the crash state is known exactly), "tree" also the small
    files and adds two (commit batches of several files), "small" only the
    small single-chunk files (no sidecars: their roll-forward records are
    in the commit batch's journal)."""
    if what == "small" and point == "rx_after_write":
        pytest.skip("six small files never reach 250 chunk writes")
    a, b, fa, fb = setup_pair(devices, tmp_path)
    old = {"big.bin": write_random(fa / "big.bin", BIG)}
    (fa / "sub").mkdir()
    for i in range(6):
        p = fa / "sub" / f"s{i}.txt"
        p.write_bytes(os.urandom(1000 + 5000 * i))
        old[f"sub/s{i}.txt"] = sha256_file(p)
    (fb / "sub").mkdir()
    for rel in old:
        copy_same(fa / rel, fb / rel)
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: folder_status(b)["in_sync"] and folder_status(a)["in_sync"], timeout=60,
             what="both in sync before the edit")
    assert b.ok("sync", "--wait", "--timeout", "30").rc == 0
    b.stop()

    # New versions on A: the big file and the small ones changed, two added.
    new = {} if what == "small" else {"big.bin": write_random(fa / "big.bin", BIG, tmp_path)}
    for i in range(6 if what in ("tree", "small") else 0):
        p = fa / "sub" / f"s{i}.txt"
        p.write_bytes(os.urandom(2000 + 7000 * i))
        new[f"sub/s{i}.txt"] = sha256_file(p)
    for i in range(2 if what == "tree" else 0):
        p = fa / f"added{i}.bin"
        p.write_bytes(os.urandom(300_000))
        new[f"added{i}.bin"] = sha256_file(p)
    a.ok("scan")

    start_env(b, {"LR_FAILPOINT": f"{point}:{hit}"})
    wait_dead(b, what=f"B crashing at {point}")
    log = log_text(b)
    assert f"failpoint {point} reached (hit {hit}), aborting" in log, log[-3000:]

    # Every file on B is whole: the old version or the new one, nothing else.
    landed = []
    for rel, h in new.items():
        if os.path.lexists(fb / rel):
            got = sha256_file(fb / rel)
            assert got in (h, old.get(rel)), f"{rel} torn after the crash at {point}"
            landed.append(got == h)
        else:
            assert rel not in old, f"{rel} vanished after the crash at {point}"
    extra = set(os.listdir(fb)) - {".landropic", "sub", "big.bin", "added0.bin", "added1.bin"}
    assert not extra, extra
    print(f"{point} ({what}): {sum(landed)} of {len(new)} files new after the crash")
    if what == "big":
        # Renamed into place only at the last point, before the index knew.
        assert landed == [point == "commit_before_index"], (point, landed)
        if point == "rx_after_write":
            assert staged_bytes(fb) > 0
    if what == "small":
        assert any(landed) == (point == "commit_before_index"), (point, landed)

    b.start()
    if what == "small" and point == "commit_before_index":
        # What was renamed is recorded from the journal, not taken for local edits.
        wait_for(lambda: "committed before the last stop, now recorded" in log_text(b),
                 timeout=30, what="the roll-forward from the commit journal")
    expected = snapshot(fa)
    wait_for(lambda: safe_snapshot(fb) == expected, timeout=120, interval=0.3,
             what=f"B converges after the crash at {point}")
    for rel, h in new.items():
        assert sha256_file(fb / rel) == h
    settled_clean(b)
    # No conflict copies or leftovers: the tree is exactly A's.
    assert safe_snapshot(fb) == snapshot(fa)
    assert not os.listdir(fb / ".landropic" / "tmp")


def test_session_of_a_file_recorded_before_a_crash_ends_complete(devices, tmp_path):
    """The receiver dies after a pulled file was committed and recorded but
    before its session's end reached the checkpoint: the session was listed
    "interrupted" for good beside a file in sync, as no transfer would ever
    end it. At the next start it ends complete."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    h = write_random(fa / "big.bin", 200 * MiB)  # long enough to be checkpointed active
    add_folders(a, b, fa, fb)
    # B first, and A once B's first checkpoint window has passed, so the
    # session's start makes a checkpoint due at once: that checkpoint was
    # taken before the session was listed, wrote nothing, and the next came
    # 500 ms later, after this transfer's end (no session to end: 2 of 3
    # runs failed so, once in a full run with A first).
    start_env(b, {"LR_FAILPOINT": "commit_after_index:1"})
    time.sleep(0.8)
    a.start()
    wait_dead(b, what="B crashing after recording the file")
    assert "failpoint commit_after_index reached (hit 1), aborting" in log_text(b)
    assert sha256_file(fb / "big.bin") == h
    b.start()
    settled_clean(b)
    sessions = b.ok("sessions", "--json").json()["sessions"]
    mine = [s for s in sessions if s["path"] == "big.bin"]
    assert mine and all(s["state"] == "complete" for s in mine), sessions


# --- SIGKILL of the receiver at 35 %: what is re-sent ------------------------

def started_with_big(devices, tmp_path, size, zero_runs=False):
    """A running pair whose A has big.bin of `size` bytes to send: (a, b,
    fa, fb, its SHA-256)."""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    want = write_random(fa / "big.bin", size, zero_runs=zero_runs)
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    return a, b, fa, fb, want


def kill_at_fraction(victim, counter, size, frac, timeout=120):
    """SIGKILLs victim once counter() passes frac * size; returns the count."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = counter()
        if n >= frac * size:
            victim.kill()
            return n
        time.sleep(0.01)
    raise AssertionError(f"the transfer never reached {frac:.0%}")


@pytest.mark.parametrize("zero_runs", [False, True], ids=["random", "zero-runs"])
def test_receiver_sigkill_at_35_percent_refetches_little(devices, tmp_path, zero_runs):
    """zero-runs: half the file is runs of zeros, which staging keeps as holes
    like the part never written; the restart takes the holes of the zeros'
    chunks for done without reading them, and the file must still be whole."""
    # The size: what is lost at the kill is about one WANT window
    # (32 MiB in flight), which a 200 MiB file makes 1.10-1.16x under load.
    size = 400 * MiB
    a, b, fa, fb, want = started_with_big(devices, tmp_path, size, zero_runs)
    seen = kill_at_fraction(b, lambda: sent_to(a, b), size, 0.35)
    staged = staged_bytes(fb)
    assert not (fb / "big.bin").exists(), "too fast to kill mid-file on this machine"
    b.start()
    wait_for(lambda: (fb / "big.bin").exists(), timeout=180, interval=0.3,
             what="big.bin on B after the restart")
    assert sha256_file(fb / "big.bin") == want
    settled_clean(b)
    total = sent_to(a, b)
    print(f"receiver killed with {seen} bytes sent, {staged} staged; total sent {total} "
          f"= {total / size:.3f} x the file")
    # Lost at the kill: what was sent and not yet staged (the WANT window in
    # flight, chunks queued for the write lane), what was sent between our
    # last look at the counter and the kill, and what the sender pushed into
    # the dead connection before the restarted receiver replaced it (its
    # send budget). Nothing staged may be fetched again: that alone would
    # add the 100+ MiB staged here. (Fixed bounds failed on loaded CI runs:
    # 1.10 x at 1.100 x with 42 MB lost this way, 1.15 x at 1.158 x with
    # 62 MB sent and not yet staged at the kill; the first bound below
    # allows for that, the second only catches a whole second download.)
    assert total - size < (seen - staged) + 40 * MiB, (seen, staged, total)
    assert total < 1.25 * size, (seen, staged, total)
    done = [s for s in sessions(b) if s["path"] == "big.bin" and s["state"] == "complete"]
    assert done and done[0]["bytes_done"] == size


def test_file_renamed_while_the_receiver_is_down_reuses_what_it_staged(devices, tmp_path):
    """The sender renames a file the receiver was killed in the middle of:
    after the restart the new name is filled from the old name's staging
    file (its session says where), and only the rest is sent. It was sent
    whole again (black-box round 35a: 314 MB after 131 MB were staged)."""
    size = 200 * MiB
    a, b, fa, fb, want = started_with_big(devices, tmp_path, size)
    seen = kill_at_fraction(b, lambda: sent_to(a, b), size, 0.5)
    staged = staged_bytes(fb)
    assert not (fb / "big.bin").exists(), "too fast to kill mid-file on this machine"
    os.rename(fa / "big.bin", fa / "moved.bin")
    assert a.ok("scan").rc == 0
    b.start()
    wait_for(lambda: (fb / "moved.bin").exists(), timeout=180, interval=0.3,
             what="moved.bin on B after the restart")
    assert sha256_file(fb / "moved.bin") == want
    settled_clean(b)
    assert not (fb / "big.bin").exists()
    again = sent_to(a, b) - seen
    print(f"killed with {seen} sent, {staged} staged; {again} sent after the restart")
    assert "(a peer's rename)" in log_text(b)
    # What was not staged, plus what was in flight at the kill (see the
    # 35 % test): a whole second download would be `size`.
    assert again < size - staged + 40 * MiB, (seen, staged, again)


# --- the sender changes the file while the receiver is down ----------------------

def test_new_version_reuses_older_versions_staging(devices, tmp_path):
    """The receiver crashes (failpoint) with about half of a 40 MiB file in
    staging; the sender's file then gets a 4 KiB edit in its second half (a
    new version, so a new staging file). After the restart the chunks the
    old staging file holds are copied (verified), not fetched: the sender
    serves little more than what was never staged. (The edit is in the
    part never staged so that the old version cannot be completed first:
    the receiver may still pull it from its stored copy of the sender's
    index before the new one arrives, and the sender serves its unchanged
    chunks; then the new version would be built from the local file.)"""
    a, b, fa, fb = setup_pair(devices, tmp_path)
    size = 40 * MiB
    write_random(fa / "big.bin", size)
    add_folders(a, b, fa, fb)
    a.start()
    # About 640 chunks of 64 KiB on average: crash after half of them.
    start_env(b, {"LR_FAILPOINT": "rx_after_write:320"})
    wait_dead(b, what="B crashing half way")
    assert "failpoint rx_after_write reached" in log_text(b)
    staged = staged_bytes(fb)
    assert not (fb / "big.bin").exists()
    assert 0.2 * size < staged < 0.9 * size, staged

    data = bytearray(open(fa / "big.bin", "rb").read())
    at = size * 7 // 8
    data[at:at + 4096] = os.urandom(4096)
    tmp = tmp_path / "edit.bin"
    tmp.write_bytes(data)
    os.replace(tmp, fa / "big.bin")
    want = hashlib.sha256(data).hexdigest()
    a.ok("scan")
    before = sent_to(a, b)

    b.start()
    wait_for(lambda: (fb / "big.bin").exists() and sha256_file(fb / "big.bin") == want,
             timeout=120, interval=0.3, what="the new big.bin on B")
    settled_clean(b)
    served = sent_to(a, b) - before
    reused = [ln for ln in log_text(b).splitlines() if "of an older version's staging" in ln]
    print(f"staged {staged} of {size}; after the edit the sender served {served} "
          f"= {served / size:.3f} x the file; {reused}")
    assert reused, "no chunk of the older version's staging file was reused"
    # Only what was never staged (plus the edited chunks and frame overhead).
    assert served < size - staged + 4 * MiB, (staged, served)
    assert served < 0.85 * size, (staged, served)
    # The older version's staging file went with the commit.
    assert not os.listdir(fb / ".landropic" / "tmp")
    done = [x for x in sessions(b) if x["path"] == "big.bin" and x["state"] == "complete"]
    assert done and done[0]["bytes_done"] == size


# --- SIGKILL of the sender ---------------------------------------------------

def test_sender_sigkill_mid_transfer_then_restart_completes(devices, tmp_path):
    size = 200 * MiB
    a, b, fa, fb, want = started_with_big(devices, tmp_path, size)
    seen = kill_at_fraction(a, lambda: received_from(b, a), size, 0.30)
    assert not (fb / "big.bin").exists(), "too fast to kill mid-file on this machine"
    time.sleep(1)
    assert not (fb / "big.bin").exists()
    a.start()
    wait_for(lambda: (fb / "big.bin").exists(), timeout=180, interval=0.3,
             what="big.bin on B after the sender's restart")
    assert sha256_file(fb / "big.bin") == want
    settled_clean(b)
    total = received_from(b, a)
    print(f"sender killed after {seen} bytes; B received {total} in all")
    assert total < 1.5 * size, total


# --- link cuts between network namespaces --------------------------------------

def cut(*nss):
    """Drops every packet in and out of each ns (one nft table, removed by
    heal). One `nft -f` per namespace, started together: under load, the
    ten `nft` runs it used to take let a fast transfer finish before the
    link was down ("the file landed during the cut")."""
    rules = ("table inet lrcut {\n"
             " chain in { type filter hook input priority 0; iifname != \"lo\" drop; }\n"
             " chain out { type filter hook output priority 0; oifname != \"lo\" drop; }\n"
             "}\n")
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for ns in nss]
    for p in procs:
        out, err = p.communicate(rules, timeout=30)
        assert p.returncode == 0, err


def heal(ns):
    subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "lrcut"],
                   capture_output=True, text=True)


def ns_pair(netns_pair, tmp_path, idle=None):
    nsa, nsb = netns_pair
    a = NsDevice(tmp_path / "a", "alice", nsa, "198.18.0.1")
    b = NsDevice(tmp_path / "b", "bob", nsb, "198.18.0.2")
    fa, fb = tmp_path / "A" / FOLDER, tmp_path / "B" / FOLDER
    fa.mkdir(parents=True)
    fb.mkdir(parents=True)
    a.init()
    b.init()
    a.ok("peer", "add", b.id, "--addr", b.addr())
    b.ok("peer", "add", a.id, "--addr", a.addr())
    return a, b, fa, fb


@pytest.mark.parametrize("cut_s,idle", [(5, None), (8, 3)], ids=["5s-survives", "8s-idle3"])
def test_link_cut_resumes_without_restart(netns_pair, tmp_path, cut_s, idle):  # noqa: F811
    nsa, nsb = netns_pair
    a, b, fa, fb = ns_pair(netns_pair, tmp_path)
    size = 200 * MiB
    want = write_random(fa / "big.bin", size)
    add_folders(a, b, fa, fb)
    extra = ("--idle-timeout", str(idle)) if idle else ()
    try:
        a.start(*extra)
        b.start(*extra)
        pid_a, pid_b = a.pid, b.pid
        deadline = time.time() + 120
        while received_from(b, a) < 0.3 * size:
            assert time.time() < deadline, "the transfer never got under way"
            time.sleep(0.01)
        cut(nsa, nsb)
        at_cut = received_from(b, a)
        t0 = time.time()
        dropped = False
        while time.time() - t0 < cut_s:
            if not (b.peer_info(a) or {}).get("connected", False):
                dropped = True
            time.sleep(0.2)
        heal(nsa)
        heal(nsb)
        assert not (fb / "big.bin").exists(), f"the file landed during the cut ({at_cut} B at it)"
        wait_for(lambda: (fb / "big.bin").exists(), timeout=180, interval=0.3,
                 what="big.bin on B after the link came back")
        assert sha256_file(fb / "big.bin") == want
        # No restart: the same daemons did it.
        assert a.pid == pid_a and b.pid == pid_b and a.alive() and b.alive()
        settled_clean(b)
        total = sent_to(a, b)
        print(f"cut {cut_s}s (idle {idle}): {at_cut} received at the cut; connection "
              f"dropped: {dropped}; total sent {total} = {total / size:.3f} x the file")
        if idle:
            assert dropped, "the connection outlived an idle timeout shorter than the cut"
        else:
            assert not dropped, "a 5 s cut killed the connection"
        # Only missing chunks fetched: what was in flight at the cut at most again.
        assert total < 1.25 * size, total
    finally:
        heal(nsa)
        heal(nsb)
        a.stop()
        b.stop()


# --- a peer serving corrupted chunks ---------------------------------------------

def run_peer(home, dev, script, *extra, timeout_ms=60000):
    return subprocess.Popen([tool_bin("lr_test_peer"), "--home", str(home), "--connect",
                             dev.addr(), "--peer", dev.id, "--script", str(script),
                             "--timeout-ms", str(timeout_ms), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def corrupt_setup(devices, tmp_path):
    """An honest daemon H holding a version that the test peer T announced
    (T handed it over honestly, with a fixed mtime so T can announce the very
    same version again later), and a receiver R that shares the folder with
    both. Returns (h, r, t, fr, script, want); H is stopped."""
    if not os.path.exists(tool_bin("lr_test_peer")):
        pytest.skip("lr_test_peer not built")
    h, r, t = devices("honest"), devices("recv"), devices("tpeer")
    for d in (h, r, t):
        d.init()
    from conftest import free_udp_port
    h.port, r.port = free_udp_port(), free_udp_port()
    for x, others in ((h, (r, t)), (r, (h, t))):
        for y in others:
            addr = ("--addr", y.addr()) if y.port else ()  # the test peer dials in
            x.ok("peer", "add", y.id, "--name", y.name, *addr)
    data = tmp_path / "payload.bin"
    want = write_random(data, CORRUPT_SIZE)
    fh, fr = tmp_path / "H" / "docs", tmp_path / "R" / "docs"
    fh.mkdir(parents=True)
    fr.mkdir(parents=True)
    h.ok("folder", "add", str(fh), "--id", "docs", "--share", r.id, "--share", t.id)
    r.ok("folder", "add", str(fr), "--id", "docs", "--share", h.id, "--share", t.id)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"folder": "docs", "bursts": [{"entries": [
        {"path": "v.bin", "data_file": str(data), "good": True,
         "mtime_ns": 1_700_000_000_123_456_789}]}]}))
    h.start()
    p = run_peer(t.home, h, script, "--linger-ms", "300")
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0 and "all-good-served" in out, (out[-2000:], err)
    wait_for(lambda: (fh / "v.bin").exists(), timeout=30, what="v.bin on the honest daemon")
    assert sha256_file(fh / "v.bin") == want
    h.stop()
    return h, r, t, fr, script, want


def stop_peer(p):
    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out


CORRUPT_SIZE = 8 * MiB


def test_corrupt_chunks_refused_file_correct(devices, tmp_path):
    """The test peer corrupts its first 8 chunk answers, then the honest
    daemon joins: the corrupt chunks are refused (failed verification,
    counted in the session), fetched again, and the file is correct."""
    h, r, t, fr, script, want = corrupt_setup(devices, tmp_path)
    r.start()
    p = run_peer(t.home, r, script, "--corrupt", "8", timeout_ms=150000)
    try:
        # The honest holder comes once the first corrupt chunk was refused
        # (else it may serve the whole file before the test peer is asked).
        wait_for(lambda: "failed verification" in log_text(r), timeout=60, interval=0.05,
                 what="a corrupt chunk refused")
        h.start()
        wait_for(lambda: (fr / "v.bin").exists(), timeout=120, interval=0.3,
                 what="v.bin on the receiver")
        assert sha256_file(fr / "v.bin") == want
    finally:
        out = stop_peer(p)
    corrupt_served = out.count("served-corrupt")
    failed = sum(s["chunks_failed"] for s in sessions(r) if s["path"] == "v.bin")
    refused = log_text(r).count("failed verification")
    print(f"corrupt chunks served {corrupt_served}, refused {refused}, chunks_failed in "
          f"sessions {failed}, bytes from honest {received_from(r, h)}")
    assert corrupt_served == 8 and refused == corrupt_served and failed >= 1
    settled_clean(r)


def test_always_corrupt_peer_does_not_stall_the_file(devices, tmp_path):
    h, r, t, fr, script, want = corrupt_setup(devices, tmp_path)
    r.start()
    p = run_peer(t.home, r, script, "--corrupt", "all", timeout_ms=150000)
    try:
        wait_for(lambda: "failed verification" in log_text(r), timeout=60, interval=0.2,
                 what="a corrupt chunk refused")
        h.start()
        wait_for(lambda: (fr / "v.bin").exists(), timeout=45, interval=0.3,
                 what="v.bin on the receiver")
        assert sha256_file(fr / "v.bin") == want
    finally:
        stop_peer(p)


# --- ENOSPC in staging ---------------------------------------------------------------

def tmpfs(path, size_mib):
    path.mkdir(parents=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")


def umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)


def enospc_setup(devices, tmp_path):
    """B's folder on an 80 MiB tmpfs holding a 30 MiB old version of big.bin
    and a 24 MiB filler outside the folder; A's new version is 40 MiB, so
    staging it runs out of space until the filler goes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    from conftest import two_peers
    a, b = two_peers(devices)
    mnt = tmp_path / "small"
    tmpfs(mnt, 80)
    fa, fb = tmp_path / "A" / FOLDER, mnt / FOLDER
    fa.mkdir(parents=True)
    fb.mkdir()
    old = write_random(fa / "big.bin", 30 * MiB)
    copy_same(fa / "big.bin", fb / "big.bin")
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    wait_for(lambda: folder_status(b)["in_sync"] and folder_status(a)["in_sync"], timeout=60,
             what="both in sync before the edit")
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.write(os.urandom(24 * MiB))
    new = write_random(fa / "big.bin", 40 * MiB, tmp_path)
    a.ok("scan")
    return a, b, fa, fb, mnt, filler, old, new


def test_enospc_keeps_old_file_and_completes_after_space_freed(devices, tmp_path):
    a, b, fa, fb, mnt, filler, old, new = enospc_setup(devices, tmp_path)
    try:
        wait_for(lambda: "big.bin" in {e.get("path") for e in folder_status(b)["errors"]},
                 timeout=90, interval=0.3,
                 what=f"big.bin failing on B: {folder_status(b)['errors']}")
        assert sha256_file(fb / "big.bin") == old, "the old file was damaged"
        print("ENOSPC error:", folder_status(b)["errors"])
        os.unlink(filler)
        wait_for(lambda: sha256_file(fb / "big.bin") == new, timeout=180, interval=0.5,
                 what="big.bin new on B once space was freed")
        settled_clean(b, timeout=120)
    finally:
        b.stop()
        a.stop()
        umount(mnt)


def test_enospc_error_names_the_lack_of_space(devices, tmp_path):
    a, b, fa, fb, mnt, filler, old, new = enospc_setup(devices, tmp_path)
    try:
        wait_for(lambda: "big.bin" in {e.get("path") for e in folder_status(b)["errors"]},
                 timeout=90, interval=0.3, what="big.bin failing on B")
        msg = [e["error"] for e in folder_status(b)["errors"] if e.get("path") == "big.bin"][0]
        assert "space" in msg.lower() or "ENOSPC" in msg, msg
        assert sha256_file(fb / "big.bin") == old
    finally:
        b.stop()
        a.stop()
        umount(mnt)
