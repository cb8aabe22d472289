"""The CLI contract without a daemon: identity, configuration, scans, and
every kind of bad input (clear one-line error, documented exit code)."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, Device

ID_RE = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$")


def test_version_and_help(device):
    r = subprocess.run([BIN, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("landropic ")
    assert device.run("--help").rc == 0
    for cmd in ["init", "id", "pair", "daemon", "stop", "peer", "peers", "folder", "folders",
                "scan", "sync", "status", "conflicts", "versions", "restore", "sessions",
                "events"]:
        r = device.run(cmd, "--help")
        assert r.rc == 0, (cmd, r)
        assert "usage: landropic" in r.out
        h = device.run("help", cmd)
        assert h.rc == 0 and h.out == r.out, (cmd, h)
    # Only COMMAND [SUBCOMMAND]: a trailing option could take the --help put
    # after it as its value and run the command for real (help init --name
    # crashed without a home).
    for extra in (["init", "--name"], ["folder", "remove", "--"], ["daemon", "--log"],
                  ["sync", "--timeout"], ["folder", "set", "x"]):
        r = device.run("help", *extra)
        assert r.rc == 2 and "landropic help: unexpected argument" in r.err, (extra, r)
    assert device.ok("help", "help").out == device.ok("--help").out
    assert device.ok("help", "--home", device.home, "init").out == device.ok("init", "--help").out
    assert device.ok("--version", "--home", device.home).out.startswith("landropic ")
    assert device.ok("help", "folder", "revert").out == device.ok("folder", "revert", "--help").out
    # A subcommand's help is its own, not its group's (black-box round 32).
    for group, subs in (("peer", ["add", "remove"]),
                        ("folder", ["add", "set", "share", "remove", "override", "revert"])):
        for sub in subs:
            out = device.ok(group, sub, "--help").out
            assert out.startswith(f"usage: landropic {group} {sub} "), out
            assert [ln for ln in out.splitlines() if f"landropic {group} " in ln] == \
                [out.splitlines()[0]], out
    r = device.run("help", "bogus")
    assert r.rc == 2 and "unknown command 'bogus'" in r.err, r
    # Extra words after --version were ignored (exit 0: black-box round 32).
    r = subprocess.run([BIN, "--version", "extra"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "'extra'" in r.stderr, r


def test_usage_errors(device):
    for args in (["bogus"], ["peers", "--bogus"], ["peer"], ["peer", "frob"], ["folder", "add"],
                 ["init", "--name"], ["scan", "--json=1"], ["--bogus"], []):
        r = device.run(*args)
        assert r.rc == 2, (args, r)
        assert r.err.strip(), args
        assert len(r.err.strip().splitlines()) <= 45
    for t in ("nan", "inf", "0x2", "-1", "0", "", "1e9999"):
        r = device.run("sync", "--wait", "--timeout", t)
        assert r.rc == 2 and "--timeout" in r.err, (t, r)
    for opt, v in (("--idle-timeout", " 5"), ("--idle-timeout", "+5"),
                   ("--discovery-port", "+80"), ("--discovery-port", " 80")):
        r = device.run("daemon", opt, v)
        assert r.rc == 2 and opt in r.err, (opt, v, r)
    # --qr would be silently dropped from a JSON document (black-box round 28).
    r = device.run("pair", "--qr", "--json")
    assert r.rc == 2 and "--qr" in r.err and len(r.err.splitlines()) == 1, r


def test_init_and_id(devices):
    d = devices("a")
    dev_id = d.init()
    assert ID_RE.match(dev_id), dev_id
    assert d.ok("id").out == dev_id + "\n"
    r = d.run("init")
    assert r.rc == 1 and "already initialised" in r.err
    assert d.ok("id").out.strip() == dev_id  # unchanged
    for f in ("key.pem", "cert.pem", "config.json"):
        assert os.stat(os.path.join(d.home, f)).st_mode & 0o077 == 0
    assert os.stat(d.home).st_mode & 0o077 == 0
    assert devices("b").run("init", "--name", "").rc == 2
    # Worded like every usage error (it lacked "init" and the hint: black-box round 33).
    r = devices("b").run("init", "--name", "a\tb")
    assert r.rc == 2 and r.err.startswith("landropic init: invalid name 'a\\x09b'") and \
        r.err.endswith("(see 'landropic init --help')\n"), r
    # An init cut short after the key is finished, keeping the key.
    os.unlink(os.path.join(d.home, "config.json"))
    assert d.ok("init", "--name", "a").out.strip() == dev_id
    # A lost certificate is issued again from the key: the same device (it
    # advised moving the home aside and a new init, which made a new device).
    os.unlink(os.path.join(d.home, "cert.pem"))
    assert d.ok("id").out.strip() == dev_id
    assert os.stat(os.path.join(d.home, "cert.pem")).st_mode & 0o777 == 0o600
    r = d.run("init")
    assert r.rc == 1 and "already initialised" in r.err, r
    # Without its key the home is named partly initialised.
    os.rename(os.path.join(d.home, "key.pem"), os.path.join(d.home, "key.away"))
    r = d.run("id")
    assert r.rc == 1 and "partly initialised" in r.err and "key.pem" in r.err, r


def test_env_home(tmp_path):
    env = dict(os.environ, LANDROPIC_HOME=str(tmp_path / "envhome"))
    r = subprocess.run([BIN, "init"], capture_output=True, text=True, env=env)
    assert r.returncode == 0
    r2 = subprocess.run([BIN, "id"], capture_output=True, text=True, env=env)
    assert r2.stdout == r.stdout


def test_home_named_with_a_control_character_is_escaped(tmp_path):
    """Messages naming the home escape it, as every human output does."""
    d = Device(tmp_path / "h\x1b[31m", "x")
    r = d.run("id")
    assert r.rc == 1 and "h\\x1b[31m is not initialised" in r.err and "\x1b" not in r.err, r
    d.init()
    for args, want in ((["init"], "already initialised"), (["status"], "daemon not running"),
                       (["folder", "add", str(tmp_path / "f\x1bx")], "f\\x1bx: No such file")):
        r = d.run(*args)
        assert want in r.err and "\x1b" not in r.err, (args, r)


def test_missing_and_unwritable_home(tmp_path):
    d = Device(tmp_path / "nothing", "x")
    for args in (["id"], ["peers"], ["folders"], ["scan"], ["peer", "add", "A" * 56]):
        r = d.run(*args)
        assert r.rc in (1, 2), (args, r)
    r = d.run("id")
    assert r.rc == 1 and "not initialised" in r.err and str(tmp_path / "nothing") in r.err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = Device(blocker / "home", "x")
    r = bad.run("init")
    assert r.rc == 1 and str(blocker) in r.err
    # A home that is a file is named so (it advised 'init', which then refused).
    r = Device(blocker, "x").run("id")
    assert r.rc == 1 and "is not a directory" in r.err, r
    # A home whose database path SQLite cannot open is refused by init, by name.
    deep = tmp_path.joinpath(*(["q" * 200] * 3))
    r = Device(deep, "x").run("init")
    assert r.rc == 2 and "bytes long: at most" in r.err and not deep.exists(), r


def test_peer_add_remove(devices, tmp_path):
    a, b = devices("a"), devices("b")
    a.init()
    b.init()
    # A single wrong character is caught by the check characters: exit 2.
    typo = b.id[:3] + ("A" if b.id[3] != "A" else "B") + b.id[4:]
    r = a.run("peer", "add", typo)
    assert r.rc == 2 and "device ID" in r.err
    assert a.run("peer", "add", "not-an-id").rc == 2
    assert a.run("peer", "add", b.id, "--addr", "nonsense").rc == 2
    assert a.run("peer", "add", b.id, "--addr", "127.0.0.1:99999").rc == 2
    for bad in ("nas.lan:21037", "300.1.1.1:1", "[zz]:1", "127.0.0.1:+5", "127.0.0.1:000005"):
        r = a.run("peer", "add", b.id, "--addr", "127.0.0.1:5", "--addr", bad)
        assert r.rc == 2 and bad in r.err, r
    r = a.run("peer", "add", a.id)
    assert r.rc == 2 and "own ID" in r.err and a.id in r.err
    # Worded like the command's other usage errors (black-box round 32 D4).
    assert r.err == f"landropic peer add: {a.id} is this device's own ID " \
                    "(see 'landropic peer add --help')\n", r.err
    assert a.ok("peers", "--json").json()["peers"] == []
    # Nor can a folder be shared with it (it was accepted and listed).
    own = tmp_path / "own"
    own.mkdir()
    r = a.run("folder", "add", str(own), "--id", "own", "--share", a.id)
    assert r.rc == 2 and "own ID" in r.err, r
    a.ok("folder", "add", str(own), "--id", "own")
    r = a.run("folder", "share", "own", a.id)
    assert r.rc == 2 and "own ID" in r.err, r
    assert r.err.startswith("landropic folder share: ") and r.err.count("\n") == 1, r
    assert a.ok("folders", "--json").json()["folders"][0]["shared"] == []
    a.ok("folder", "remove", "own")
    a.ok("peer", "add", b.id.lower().replace("-", ""), "--name", "bee", "--addr",
         "127.0.0.1:21037")
    doc = a.ok("peers", "--json").json()
    assert doc["pending"] == []  # the daemon's shape, without one
    peers = doc["peers"]
    assert len(peers) == 1 and peers[0]["index"]["bytes_sent"] == 0
    p = peers[0]
    assert p["id"] == b.id and p["name"] == "bee" and p["addresses"] == ["127.0.0.1:21037"]
    assert p["connected"] is False and p["bytes_sent"] == 0 and p["bytes_received"] == 0
    assert set(p) >= {"id", "name", "addresses", "connected", "bytes_sent", "bytes_received"}
    a.ok("peer", "remove", b.id)
    assert a.ok("peers", "--json").json()["peers"] == []
    r = a.run("peer", "remove", b.id)
    assert r.rc == 1 and b.id in r.err
    # An address given twice counts once toward the 16 (17 naming 3 were refused).
    args = [x for i in range(17) for x in ("--addr", f"127.0.0.1:{21000 + i % 3}")]
    a.ok("peer", "add", b.id, *args)
    assert a.ok("peers", "--json").json()["peers"][0]["addresses"] == [
        "127.0.0.1:21000", "127.0.0.1:21001", "127.0.0.1:21002"]
    args = [x for i in range(17) for x in ("--addr", f"127.0.0.1:{21000 + i}")]
    r = a.run("peer", "add", b.id, *args)
    assert r.rc == 2 and "too many addresses (at most 16)" in r.err, r


def test_folder_add_rules(device, tmp_path):
    area = tmp_path / "area"
    f = area / "docs"
    f.mkdir(parents=True)
    (tmp_path / "plainfile").write_text("x")
    r = device.run("folder", "add", str(tmp_path / "missing"))
    assert r.rc == 1 and "missing" in r.err
    r = device.run("folder", "add", str(tmp_path / "plainfile"))
    assert r.rc == 1 and "not a directory" in r.err
    device.ok("folder", "add", str(f))
    assert (f / ".landropic").is_dir()
    folders = device.ok("folders", "--json").json()["folders"]
    assert [x["id"] for x in folders] == ["docs"]
    assert folders[0]["path"] == str(f.resolve())
    r = device.run("folder", "add", str(f), "--id", "other")
    assert r.rc == 1 and "already" in r.err
    g = tmp_path / "g"
    g.mkdir()
    r = device.run("folder", "add", str(g), "--id", "docs")
    assert r.rc == 1 and "docs" in r.err
    (f / "sub").mkdir()
    r = device.run("folder", "add", str(f / "sub"))
    assert r.rc == 1 and "inside" in r.err
    r = device.run("folder", "add", str(area))
    assert r.rc == 1 and "contains" in r.err
    os.makedirs(os.path.join(device.home, "inner"), exist_ok=True)
    r = device.run("folder", "add", os.path.join(device.home, "inner"))
    assert r.rc == 1 and "home" in r.err
    assert device.run("folder", "add", str(g), "--mode", "sideways").rc == 2
    assert device.run("folder", "add", str(g), "--conflict", "loudest").rc == 2
    assert device.run("folder", "add", str(g), "--conflict", "prefer:XYZ").rc == 2
    assert device.run("folder", "add", str(g), "--conflict-window", "-3").rc == 2
    assert device.run("folder", "add", str(g), "--share", "garbage").rc == 2
    assert device.run("folder", "add", str(g), "--id", "a/b").rc == 2
    r = device.run("folder", "add", str(g), "--id", "y" * 256)
    assert r.rc == 2 and "longer than 255 bytes" in r.err, r  # the reason survives
    r = device.run("folder", "add", str(g), "--id", "esc\x1b[31m")
    assert r.rc == 2 and "'esc\\x1b[31m'" in r.err, r  # escaped once
    # Values quoted raw by the usage errors of numbers and levels too.
    for args in (("sync", "--timeout", "1\x1b[31m"), ("daemon", "--idle-timeout", "x\x1b[31m"),
                 ("daemon", "--log-level", "loud\x1b[31m")):
        r = device.run(*args)
        assert r.rc == 2 and "\x1b" not in r.err and "\\x1b[31m'" in r.err, r
    assert "expected error, warn, info, debug or trace" in r.err, r
    device.ok("folder", "add", str(g), "--id", "gee", "--mode", "receive-only", "--conflict",
              "newest", "--conflict-window", "5")
    gee = [x for x in device.ok("folders", "--json").json()["folders"] if x["id"] == "gee"][0]
    assert gee["mode"] == "receive-only" and gee["conflict"] == "newest"
    assert gee["conflict_window"] == 5
    device.ok("folder", "remove", "gee")
    assert g.exists() and (g / ".landropic").exists()  # never deletes user files
    r = device.run("folder", "remove", "gee")
    assert r.rc == 1 and "gee" in r.err


def test_folder_overlapping_home_through_symlink_refused(devices, tmp_path):
    """The home named through a symlink: a folder holding its real directory
    (the private key, the index) is still refused."""
    area = tmp_path / "area"
    area.mkdir()
    real = area / "realhome"
    link = tmp_path / "linkhome"
    d = Device(real, "h")
    d.init()
    link.symlink_to(real)
    d.home = str(link)
    r = d.run("folder", "add", str(area))
    assert r.rc == 1 and "home" in r.err, r
    assert d.ok("folders", "--json").json()["folders"] == []


def test_folder_path_not_utf8(device, tmp_path):
    """A folder whose path is not UTF-8 is added (the path travels as
    path_b64); its name cannot be the ID, which says to give one."""
    import base64
    raw = os.fsencode(tmp_path) + b"/inv\xffdir"
    os.mkdir(raw)
    r = device.run("folder", "add", os.fsdecode(raw))
    assert r.rc == 2 and "--id" in r.err and "UTF-8" in r.err, r
    device.ok("folder", "add", os.fsdecode(raw), "--id", "inv")
    f = device.ok("folders", "--json").json()["folders"][0]
    assert f["id"] == "inv" and base64.b64decode(f["path_b64"]) == raw
    assert os.path.isdir(raw + b"/.landropic")


def test_concurrent_offline_edits_all_kept(device, tmp_path):
    """Config commands racing without a daemon each load, change and save the
    file: every one must survive (they once kept 3 of 8)."""
    dirs = []
    for i in range(8):
        (tmp_path / f"c{i}").mkdir()
        dirs.append(str(tmp_path / f"c{i}"))
    procs = [subprocess.Popen([BIN, "--home", device.home, "folder", "add", p],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for p in dirs]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    got = {f["path"] for f in device.ok("folders", "--json").json()["folders"]}
    assert got == set(dirs)
    procs = [subprocess.Popen([BIN, "--home", device.home, "folder", "remove", f"c{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(6)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    got = {f["id"] for f in device.ok("folders", "--json").json()["folders"]}
    assert got == {"c6", "c7"}


def test_folder_share(devices, tmp_path):
    a, b = devices("a"), devices("b")
    a.init()
    b.init()
    f = tmp_path / "s"
    f.mkdir()
    a.ok("folder", "add", str(f))
    a.ok("folder", "share", "s", b.id)
    a.ok("folder", "share", "s", b.id)  # idempotent
    assert a.ok("folders", "--json").json()["folders"][0]["shared"] == [b.id]
    assert a.run("folder", "share", "nope", b.id).rc == 1
    assert a.run("folder", "share", "s", "bad-id").rc == 2


def scan(device, *ids):
    r = device.run("scan", "--json", *ids)
    return r, (json.loads(r.out) if r.out.strip() else None)


def test_scan_reports_changes(device, tmp_path):
    f = tmp_path / "data"
    f.mkdir()
    (f / "a.txt").write_text("hello")
    (f / "sub").mkdir()
    (f / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    os.symlink("/etc/passwd", f / "link")
    device.ok("folder", "add", str(f))
    r, doc = scan(device)
    assert r.rc == 0, r
    (entry,) = doc["folders"]
    assert set(entry) >= {"id", "files", "bytes", "added", "changed", "deleted",
                          "bytes_hashed", "seconds"}
    assert entry["id"] == "data" and entry["files"] == 2
    assert entry["bytes"] == 300_005 and entry["bytes_hashed"] == 300_005
    assert entry["added"] >= 3  # two files, a directory and a symlink
    # Durations print with at most nine significant digits, not a double's 17.
    secs = re.search(r'"seconds": ([0-9.e+-]+)', r.out).group(1)
    assert len(re.sub(r"e.*|[.-]", "", secs).lstrip("0")) <= 9, secs
    r, doc = scan(device, "data")
    e = doc["folders"][0]
    assert (e["added"], e["changed"], e["deleted"], e["bytes_hashed"]) == (0, 0, 0, 0)
    (f / "a.txt").write_text("hello, world")
    os.unlink(f / "sub" / "b.bin")
    (f / "new").write_text("new")
    r, doc = scan(device)
    e = doc["folders"][0]
    assert (e["added"], e["changed"], e["deleted"]) == (1, 1, 1)
    assert e["files"] == 2 and e["bytes"] == 15
    r = device.run("scan", "nosuch")
    assert r.rc == 1 and "nosuch" in r.err


def test_scan_warns_of_a_date_the_index_cannot_hold(device, tmp_path):
    """ext4 holds dates up to 2446; the index's int64 ns ends in 2262, so
    peers get that end. It was silent (black-box round 32 D2); the scan that
    records such a version says so, once."""
    f = tmp_path / "data"
    f.mkdir()
    (f / "far.txt").write_text("from the future")
    (f / "now.txt").write_text("today")
    (f / "fardir").mkdir()
    os.symlink("now.txt", f / "farlink")
    t = 10_413_792_000  # 2300-01-01
    os.utime(f / "far.txt", (t, t))
    os.utime(f / "farlink", (t, t), follow_symlinks=False)
    os.utime(f / "fardir", (t, t))
    if os.stat(f / "far.txt").st_mtime != t:
        pytest.skip("this file system cannot hold dates after 2262")
    device.ok("folder", "add", str(f))
    r = device.ok("scan")
    lines = [ln for ln in r.err.splitlines() if "modification time" in ln]
    assert len(lines) == 3 and all("2262-04-11" in ln for ln in lines), r.err
    assert {ln.rsplit("path=", 1)[1] for ln in lines} == {"far.txt", "farlink", "fardir"}, lines
    assert "modification time" not in device.ok("scan").err
    assert os.stat(f / "far.txt").st_mtime == t  # never changed here


def test_scan_marker_missing_records_no_deletions(device, tmp_path):
    f = tmp_path / "m"
    f.mkdir()
    for i in range(5):
        (f / f"f{i}").write_text(str(i))
    device.ok("folder", "add", str(f))
    assert scan(device)[0].rc == 0
    # The disk "unmounts": marker and files vanish.
    os.rename(f, tmp_path / "m-away")
    f.mkdir()
    r, doc = scan(device)
    assert r.rc == 1 and ".landropic" in r.err
    # One line naming the folder (an error from inside a folder, say a bad
    # .landropicignore line, did not say which folder it was).
    fid = doc["folders"][0]["id"]
    assert r.err.startswith(f"landropic: folder '{fid}': ") and r.err.count("\n") == 1, r.err
    # Back again: nothing was recorded as deleted.
    f.rmdir()
    os.rename(tmp_path / "m-away", f)
    r, doc = scan(device)
    assert r.rc == 0
    e = doc["folders"][0]
    assert e["deleted"] == 0 and e["files"] == 5


def test_scan_non_utf8_and_control_names(device, tmp_path):
    f = tmp_path / "w"
    f.mkdir()
    bad = os.path.join(os.fsencode(str(f)), b"bad-\xff\xfe.txt")
    with open(bad, "wb") as fh:
        fh.write(b"x")
    with open(os.path.join(str(f), "esc\x1b[1Aname\n"), "w") as fh:
        fh.write("y")
    device.ok("folder", "add", str(f))
    r, doc = scan(device)
    assert r.rc == 0 and doc["folders"][0]["files"] == 2
    assert "\x1b" not in device.ok("scan").out


def test_folder_path_not_utf8_shown_with_its_bytes(device, tmp_path):
    """Human `folders` shows a folder path that is not UTF-8 with \\xff, from
    path_b64, as every listing does; it showed U+FFFD."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xffdir")
    os.mkdir(raw)
    device.ok("folder", "add", os.fsdecode(raw), "--id", "badd")
    out = device.ok("folders").out
    assert "bad\\xffdir" in out and "\ufffd" not in out, out


def test_daemon_commands_need_daemon(device):
    for args in (["status"], ["status", "--json"], ["sync"], ["sync", "--wait"], ["stop"],
                 ["conflicts"], ["sessions", "--json"], ["events"], ["pair"]):
        r = device.run(*args)
        assert r.rc == 4, (args, r)
        assert "daemon not running" in r.err


def test_folder_id_not_utf8_is_a_usage_error(device, tmp_path):
    """A FOLDER_ID that is not UTF-8 (no folder can have it) could not be put
    in the request and was left out: `status`, `scan` and `sync` then acted
    on every folder, exit 0, and `pair --join --folder` shared none
    (review, session 21)."""
    (tmp_path / "d").mkdir()
    device.ok("folder", "add", str(tmp_path / "d"), "--id", "d")
    device.start()
    for args in (["status"], ["status", "--json"], ["scan"], ["sync"], ["sync", "--wait"],
                 ["pair", "--join", "ABCD-EFGH", "--folder"]):
        r = device.run(*args, "\udcff")
        assert r.rc == 2, (args, r)
        assert "FOLDER_ID '\\xff' is not valid UTF-8" in r.err and r.out == "", (args, r)
    # The others named no culprit: "missing parameter 'id'" (black-box round 34a).
    for args, after in ((["folder", "set"], ["--conflict", "newest"]),
                        (["folder", "share"], [device.id]), (["folder", "remove"], []),
                        (["folder", "override"], []), (["folder", "revert"], []),
                        (["conflicts"], []), (["versions"], []), (["restore"], ["a.txt"])):
        r = device.run(*args, "\udcff", *after)
        assert r.rc == 2, (args, r)
        assert "FOLDER_ID '\\xff' is not valid UTF-8" in r.err and r.out == "", (args, r)
    assert device.ok("status", "d", "--json").json()["folders"][0]["id"] == "d"


def test_restore_and_versions_name_a_bad_path(device, tmp_path):
    """A PATH no folder entry can have is a usage error (exit 2, as a
    malformed device ID is), named in one line, with or without a folder."""
    (tmp_path / "f").mkdir()
    device.ok("folder", "add", str(tmp_path / "f"), "--id", "f")
    for args in (["restore", "f", "../../etc/passwd"], ["versions", "f", "/etc"],
                 ["versions", "f", "a//b"], ["restore", "nofolder", ".landropic/x"]):
        r = device.run(*args)
        assert r.rc == 2 and args[2] in r.err and len(r.err.splitlines()) == 1, (args, r)


def test_versions_human_output_escapes_raw_bytes(device, tmp_path):
    """A name that is not UTF-8 shows its bytes escaped (\\xff) in human
    output, as for other names, not U+FFFD (JSON keeps path + path_b64)."""
    (tmp_path / "f").mkdir()
    device.ok("folder", "add", str(tmp_path / "f"), "--id", "f")
    arch = os.path.join(os.fsencode(tmp_path / "f"), b".landropic", b"versions")
    os.makedirs(arch, exist_ok=True)
    with open(os.path.join(arch, b"caf\xff.txt~20240101-000000"), "wb") as fh:
        fh.write(b"old\n")
    out = device.ok("versions", "f").out
    assert "caf\\xff.txt" in out and "\ufffd" not in out, out
    j = device.ok("versions", "f", "--json").json()["versions"][0]
    assert j["path"] == "caf\ufffd.txt" and j["path_b64"] == "Y2Fm/y50eHQ=", j
    # A user's short name that looks like the archive's tag for a cut name is not one.
    with open(os.path.join(arch, b"foo~deadbeef~20240101-000000"), "wb") as fh:
        fh.write(b"x\n")
    j = device.ok("versions", "f", "foo~deadbeef", "--json").json()["versions"]
    assert len(j) == 1 and "cut" not in j[0], j
    # A directory as a shell completes it, with a trailing slash (was refused).
    os.makedirs(os.path.join(arch, b"sub"))
    with open(os.path.join(arch, b"sub", b"x.txt~20240101-000000"), "wb") as fh:
        fh.write(b"x\n")
    for arg in ("sub", "sub/", "sub//"):
        j = device.ok("versions", "f", arg, "--json").json()["versions"]
        assert [v["path"] for v in j] == ["sub/x.txt"], (arg, j)


def test_prefer_strategy_stored_in_its_normal_form(device, tmp_path):
    """prefer:ID accepts any spelling `peer add` accepts (lower case, no
    dashes); it is stored as the audit trail and peers spell it, so
    `folders --json` does not show one form and the trail another."""
    (tmp_path / "f").mkdir()
    (tmp_path / "g").mkdir()
    me = device.id
    loose = me.replace("-", "").lower()
    device.ok("folder", "add", str(tmp_path / "f"), "--id", "f", "--conflict", "prefer:" + loose)
    device.ok("folder", "add", str(tmp_path / "g"), "--id", "g")
    device.ok("folder", "set", "g", "--conflict", "prefer:" + loose)
    folders = {f["id"]: f for f in device.ok("folders", "--json").json()["folders"]}
    assert folders["f"]["conflict"] == "prefer:" + me, folders["f"]
    assert folders["g"]["conflict"] == "prefer:" + me, folders["g"]
    device.ok("folder", "set", "g", "--conflict", "prefer:" + me)
    folders = {f["id"]: f for f in device.ok("folders", "--json").json()["folders"]}
    assert folders["g"]["conflict"] == "prefer:" + me, folders["g"]


def test_empty_host_name_gives_a_usable_name(tmp_path):
    """A machine whose host name is empty: init stored "" and the daemon
    could never start ('our HELLO is invalid'); the name is 'landropic'."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private host name")
    home = tmp_path / "h"
    script = ("import socket, subprocess, sys; socket.sethostname(b''); "
              "sys.exit(subprocess.run(sys.argv[1:]).returncode)")
    r = subprocess.run(["unshare", "-u", sys.executable, "-c", script, BIN, "--home", str(home),
                        "init"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    d = Device(home, "x")
    cfg = json.loads((home / "config.json").read_text())
    assert cfg["device"]["name"] == "landropic", cfg
    assert d.run("pair", "--json").rc == 4  # configured and usable, daemon not running


def test_folder_add_refuses_a_folder_under_another_name(device, tmp_path):
    """The same directory by another path: the same text, a symlink or `..`
    were refused, but a bind mount of it was added as a second folder, both
    sharing one marker, staging area and archive (black-box round 34b)."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    real, other = tmp_path / "real", tmp_path / "other"
    real.mkdir()
    other.mkdir()
    device.ok("folder", "add", str(real), "--id", "f")
    r = device.run("folder", "add", str(real / ".." / "real"), "--id", "g")
    assert r.rc == 1 and "already shared as folder 'f'" in r.err, r
    if subprocess.run(["mount", "--bind", str(real), str(other)]).returncode != 0:
        pytest.skip("cannot bind-mount")
    try:
        r = device.run("folder", "add", str(other), "--id", "g")
        assert r.rc == 1, r
        assert f"{other} is the directory of folder 'f' ({real}), under another name" in r.err, r
        assert [f["id"] for f in device.ok("folders", "--json").json()["folders"]] == ["f"]
    finally:
        subprocess.run(["umount", str(other)])
