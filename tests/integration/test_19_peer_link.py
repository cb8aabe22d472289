"""`peer add` takes the landropic:// link that `pair --qr` shows: the device
ID and every address in it, with a one-line usage error for a bad link."""
from conftest import free_udp_port


def test_peer_add_accepts_the_pair_link(devices):
    a, b = devices("alice"), devices("bob")
    a.init()
    b.init()
    a.port = free_udp_port()
    a.start()
    link = a.ok("pair", "--json").json()["link"]
    assert link.startswith("landropic://" + a.id)
    b.ok("peer", "add", link, "--name", "alice")
    peers = b.ok("peers", "--json").json()["peers"]
    assert len(peers) == 1 and peers[0]["id"] == a.id and peers[0]["name"] == "alice"
    assert a.addr() in peers[0]["addresses"]
    # A link with a broken ID or an unknown parameter is refused and adds nothing.
    # One data character changed: the Luhn mod 32 check character catches every
    # single substitution (seven changed at once passed it once in 32 runs).
    bad = link.replace(a.id[0], "B" if a.id[0] != "B" else "C", 1)
    r = b.run("peer", "add", bad)
    assert r.rc == 2 and "link" in r.err and len(r.err.strip().splitlines()) == 1
    r = b.run("peer", "add", "landropic://" + a.id + "?via=1.2.3.4:5")
    assert r.rc == 2 and "unknown parameter" in r.err
    assert len(b.ok("peers", "--json").json()["peers"]) == 1
