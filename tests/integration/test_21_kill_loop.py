"""kill -9 loops (issue #7): the receiver (or the sender) is SIGKILLed at
seeded random moments while a mixed folder syncs, and restarted each time;
the sender's files get new versions between and during the kills.

What must hold:
- right after each kill, before the restart, every file on the receiver is
  whole: byte for byte one of the versions the sender ever had at that path
  (never a mix or a truncation), and nothing else appears in the folder
  (staging lives under .landropic/tmp);
- in the end the receiver converges to the sender's tree exactly, and its
  database agrees with its disk: `status --json` needs nothing, a rescan
  through the daemon finds no change, and neither does an in-process rescan
  after a graceful stop.

Timing is random (seeded), so the kills land in start-up, the index
exchange, mid-chunk and around commits; the seed is in the test id so a
failure can be rerun. Every wait is bounded and waits for a condition.
"""
import hashlib
import os
import random
import signal
import time

import pytest

from conftest import wait_for
from test_06_sync_tree import add_folders, safe_snapshot, setup_pair, sha256_file, snapshot

KiB = 1 << 10
MiB = 1 << 20
KILLS = 3


def write_atomic(path, data, scratch):
    """data at path through a rename, so the sender never scans half a file;
    returns its SHA-256."""
    tmp = scratch / ("w-" + path.name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


class Sender:
    """The sender's folder and every version it ever had per path."""

    def __init__(self, root, scratch, rng):
        self.root, self.scratch, self.rng = root, scratch, rng
        self.versions = {}
        self.content = {}

    def put(self, rel, data):
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        self.versions.setdefault(rel, set()).add(write_atomic(p, data, self.scratch))
        self.content[rel] = data

    def move(self, old, new):
        """A rename (the mtime kept, so the receiver moves its file too)."""
        os.rename(self.root / old, self.root / new)
        self.versions.setdefault(new, set()).update(self.versions[old])
        self.content[new] = self.content.pop(old)

    def populate(self):
        for i in range(3):
            self.put(f"big{i}.bin", os.urandom(self.rng.randint(2 * MiB, 4 * MiB)))
        for i in range(40):
            self.put(f"small/d{i % 4}/f{i}.txt", os.urandom(self.rng.randint(100, 60 * KiB)))

    def mutate(self):
        """New versions: a big file edited in the middle (most chunks kept), a
        big one rewritten, a few small ones changed, one added."""
        rng = self.rng
        bigs = sorted(r for r in self.content if r.startswith("big"))
        rel = rng.choice(bigs)
        data = bytearray(self.content[rel])
        at = rng.randrange(len(data) // 4, len(data) // 2)
        data[at:at + 4096] = os.urandom(4096)
        self.put(rel, bytes(data))
        other = rng.choice([r for r in bigs if r != rel])
        self.put(other, os.urandom(rng.randint(2 * MiB, 4 * MiB)))
        smalls = sorted(r for r in self.content if r.startswith("small"))
        for r in rng.sample(smalls, 5):
            self.put(r, os.urandom(rng.randint(100, 60 * KiB)))
        self.put(f"small/new{len(self.content)}.txt", os.urandom(rng.randint(100, 30 * KiB)))


def check_whole(fb, sender, when):
    """Every file under fb is one of the sender's versions of its path."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(fb):
        if os.path.samefile(dirpath, fb):
            dirnames[:] = [n for n in dirnames if n != ".landropic"]
        for name in filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, fb)
            assert rel in sender.versions, f"{when}: unexpected file {rel} on the receiver"
            got = sha256_file(p)
            assert got in sender.versions[rel], \
                f"{when}: {rel} is torn ({os.path.getsize(p)} bytes, matches no version)"
            seen += 1
    return seen


def folder_status(dev):
    return dev.ok("status", "--json").json()["folders"][0]


def connected(dev, other):
    return (dev.peer_info(other) or {}).get("connected", False)


def converge_and_check_db(a, b, fa, fb):
    expected = snapshot(fa)
    wait_for(lambda: safe_snapshot(fb) == expected, timeout=120, interval=0.3,
             what="the receiver converging to the sender's tree")
    assert b.ok("sync", "--wait", "--timeout", "90").rc == 0
    assert a.ok("sync", "--wait", "--timeout", "90").rc == 0
    st = folder_status(b)
    assert st["in_sync"] and st["need_files"] == 0 and not st["errors"], st
    # A rescan through the daemon finds the disk as the index has it.
    scanned = b.ok("scan", "--json").json()["folders"][0]
    assert (scanned["added"], scanned["changed"], scanned["deleted"]) == (0, 0, 0), scanned
    assert safe_snapshot(fb) == expected
    assert not os.listdir(fb / ".landropic" / "tmp")
    # And so does an in-process one once the daemon has stopped.
    b.stop()
    scanned = b.ok("scan", "--json").json()["folders"][0]
    assert (scanned["added"], scanned["changed"], scanned["deleted"]) == (0, 0, 0), scanned


def kill_loop(devices, tmp_path, seed, victim_name):
    rng = random.Random(seed)
    a, b, fa, fb = setup_pair(devices, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sender = Sender(fa, scratch, rng)
    sender.populate()
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    victim, other = (b, a) if victim_name == "receiver" else (a, b)
    for k in range(KILLS):
        # Wait for the link (bounded: a kill before it is fine too), then
        # let the sync run a random while, maybe changing files meanwhile.
        try:
            wait_for(lambda: connected(b, a), timeout=15, interval=0.05, what="connected")
        except AssertionError:
            pass
        if rng.random() < 0.5:
            sender.mutate()
            if a.alive():
                a.ok("scan")
        # The kill moment itself is the random part, not a wait for a state.
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        victim.kill(signal.SIGKILL)
        n = check_whole(fb, sender, f"seed {seed}, kill {k + 1} of the {victim_name}")
        print(f"seed {seed} kill {k + 1} at +{delay:.2f}s: {n} whole files on the receiver")
        if rng.random() < 0.5:
            sender.mutate()
            if a.alive():
                a.ok("scan")
        victim.start()
    # A last change with both up, so the end state is not the last kill's.
    sender.mutate()
    a.ok("scan")
    converge_and_check_db(a, b, fa, fb)
    for rel, data in sender.content.items():
        assert sha256_file(fb / rel) == hashlib.sha256(data).hexdigest(), rel


@pytest.mark.parametrize("seed", [11, 23, 37, 52])
def test_receiver_kill_loop(devices, tmp_path, seed):
    kill_loop(devices, tmp_path, seed, "receiver")


def test_sender_kill_loop(devices, tmp_path):
    kill_loop(devices, tmp_path, 71, "sender")


@pytest.mark.parametrize("point", ["commit_before_index", "pull_before_index"])
def test_crash_after_renames_then_sender_moves_on(devices, tmp_path, point):
    """The deterministic form of what the loops hit by chance: the receiver
    dies after files were renamed into place and before the index recorded
    them, and the sender changes those files again before the receiver is
    back. commit_before_index: a commit batch (fetched files, and copies
    of files the receiver has, built from its own chunks);
    pull_before_index: a pull page that moved files (the sender renamed
    them) and committed them at once. The
    files on disk are the versions the receiver was committing, so its
    start-up records them (roll-forward) instead of its first scan taking
    them for local edits, which would then conflict with the sender's new
    versions (conflict copies on a device where nobody edited anything)."""
    from test_16_resume import log_text, start_env, wait_dead
    rng = random.Random(5)
    a, b, fa, fb = setup_pair(devices, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sender = Sender(fa, scratch, rng)
    sender.populate()
    add_folders(a, b, fa, fb)
    a.start()
    b.start()
    expected = snapshot(fa)
    wait_for(lambda: safe_snapshot(fb) == expected, timeout=120, interval=0.2,
             what="the first sync")
    b.stop()
    if point == "commit_before_index":
        sender.mutate()
        for i in range(3):
            sender.put(f"copies/c{i}.bin", sender.content[f"big{i}.bin"])
    else:
        (fa / "moved").mkdir()
        for i in range(3):
            sender.move(f"big{i}.bin", f"moved/big{i}.bin")
    a.ok("scan")
    start_env(b, {"LR_FAILPOINT": f"{point}:1"})
    wait_dead(b, what=f"B crashing at {point}")
    assert f"failpoint {point} reached" in log_text(b)
    n = check_whole(fb, sender, "after the crash")
    if point == "pull_before_index":
        assert (fb / "moved").exists(), "no file was moved into place before the crash"
        for i in range(3):
            sender.put(f"moved/big{i}.bin", os.urandom(3000))
    else:
        sender.mutate()
        for i in range(3):
            sender.put(f"copies/c{i}.bin", os.urandom(3000))
    a.ok("scan")
    b.start()
    converge_and_check_db(a, b, fa, fb)
    rolled = log_text(b).count("now recorded")
    print(f"{point}: {n} whole files after the crash; rolled forward: {rolled}")
    assert rolled, "nothing was rolled forward"
