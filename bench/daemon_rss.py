"""daemon_rss.py - RssAnon of two real daemons before and after moving 1 GiB
between them over the transport (test-only debug.send method, so it needs the
default test build). Not a test: run on demand, e.g.
    LANDROPIC_BIN=build/landropic /usr/bin/python3 bench/daemon_rss.py
"""
import sys, time, os, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import conftest
from conftest import Device, free_udp_port
from test_03_netns import _api
t = tempfile.mkdtemp()
a = Device(t + "/a", "a"); b = Device(t + "/b", "b")
a.init(); b.init(); a.port = free_udp_port(); b.port = free_udp_port()
a.ok("peer", "add", b.id, "--addr", b.addr()); b.ok("peer", "add", a.id, "--addr", a.addr())
a.start(); b.start()
conftest.wait_for(lambda: a.peer_info(b)["connected"] and b.peer_info(a)["connected"], 10)
time.sleep(3)
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("RssAnon"): return l.split()[1]
print("before: a", rss(a.pid), "b", rss(b.pid), "KiB")
size = 1 << 30
t0 = time.time()
_api(a, "debug.send", {"peer": b.id, "bytes": size, "seed": 5})
conftest.wait_for(lambda: _api(b, "debug.state", {"peer": a.id})["received"] >= size, 120, 0.2)
el = time.time() - t0
sa = _api(a, "debug.state", {"peer": b.id}); sb = _api(b, "debug.state", {"peer": a.id})
assert sa["sent_sha256"] == sb["received_sha256"]
time.sleep(2)
print(f"1 GiB daemon to daemon in {el:.2f}s ({size/el/1e6:.0f} MB/s incl. polling)")
print("after: a", rss(a.pid), "b", rss(b.pid), "KiB")
a.stop(); b.stop()
