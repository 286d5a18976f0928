"""Five daemons, entries written on all of them, gossip losing a share of them: sync
makes every node end with the same entries.

Real processes over loopback TCP. Each daemon throws away 30% of the ledger gossip it
receives (`--gossip-drop`), one node is offline while others write and comes back,
and sync (`/chorus/sync/1.0.0`, every 2 s plus on connect and on gaps) must repair
all of it. "The same entries" is checked three ways: identical feed heads (a head's
id pins its whole chain), identical sets of entry ids, identical counts per kind and
author (the tallies the ledger layer can compute today).
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import DaemonProcess, wait_for

pytestmark = pytest.mark.integration

COOP = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
FLAGS = ("--gossip-drop", "0.3", "--sync-interval", "2", "--tree-head-interval", "0")


def api(node: DaemonProcess, method: str, path: str, body: Any = None) -> Any:
    return node.chorus_api(method, path, body)


def append(node: DaemonProcess, key: str, text: str) -> str:
    return api(node, "POST", "/ledger/entries", {"key": key, "kind": "note",
                                                   "body": {"text": text}})["id"]


def snapshot(node: DaemonProcess) -> tuple[dict, frozenset, Counter]:
    heads = {f["author"]: (f["seq"], f["head"]) for f in api(node, "GET", "/ledger/heads")["feeds"]}
    ids: set[str] = set()
    tally: Counter = Counter()
    start = 0
    while True:
        page = api(node, "GET", f"/ledger/log?start={start}&limit=1000")
        for entry in page["entries"]:
            ids.add(entry["id"])
            tally[(entry["author"], entry["kind"])] += 1
        start += len(page["entries"])
        if not page["entries"] or start >= page["size"]:
            return heads, frozenset(ids), tally


def test_five_daemons_converge_despite_dropped_gossip(tmp_path: Path) -> None:
    nodes: list[DaemonProcess] = []
    try:
        for i in range(5):
            boot = [nodes[0].addr] if nodes else []  # a star around node 0, then meshes
            node = DaemonProcess(tmp_path / f"n{i}", bootstrap=boot, dht=False, coop=COOP,
                                 extra=FLAGS)
            node.cli("key", "new", "member")
            nodes.append(node.start())
        for node in nodes[2:]:
            node.connect(nodes[1])
        written: set[str] = set()
        for round_number in range(4):
            for i, node in enumerate(nodes):
                for n in range(5):
                    written.add(append(node, "member", f"n{i} r{round_number} #{n}"))
                written.add(append(node, "self", f"node {i} round {round_number}"))
        # One node goes offline; the others keep writing; it comes back and catches up.
        nodes[4].stop()
        for i, node in enumerate(nodes[:4]):
            for n in range(10):
                written.add(append(node, "member", f"n{i} while 4 was away #{n}"))
        nodes[4].start()
        nodes[4].connect(nodes[2])
        written.add(append(nodes[4], "member", "back"))

        started = time.monotonic()

        def converged() -> list | None:
            shots = [snapshot(node) for node in nodes]
            if all(shot == shots[0] for shot in shots) and shots[0][1] >= written:
                return shots
            return None

        shots = wait_for(converged, timeout=90, interval=1.0,
                         what="all five nodes to hold the same entries")
        took = time.monotonic() - started
        heads, ids, _ = shots[0]
        assert ids == written  # nothing lost, nothing invented
        assert len(heads) == 10  # 5 node feeds + 5 member feeds
        dropped = sum(api(n, "GET", "/ledger")["replication"]["dropped_injected"] for n in nodes)
        synced = sum(api(n, "GET", "/ledger")["sync"]["entries_stored"] for n in nodes)
        assert dropped > 0 and synced > 0, (dropped, synced)
        print(f"converged {len(ids)} entries on 5 nodes in {took:.1f} s after the last write; "
              f"gossip items dropped {dropped}, repaired by sync {synced}")
        for node in nodes:
            assert api(node, "POST", "/ledger/tree-head")["tree_head"] is not None
            report = api(node, "POST", "/ledger/verify")
            # Other nodes' heads, signed in this same loop, may arrive after this
            # node's own head: at most those four are not covered by it.
            assert report["tree_heads"] and report["uncovered"] <= 4
            assert report["ok"], report["findings"][:5]
    finally:
        for node in nodes:
            node.stop()


def test_sync_refuses_another_coop_and_hostile_requests_keep_serving(tmp_path: Path) -> None:
    """A node of another co-op gets nothing from sync and both keep serving."""
    ours = DaemonProcess(tmp_path / "ours", dht=False, coop=COOP, extra=FLAGS).start()
    theirs = DaemonProcess(
        tmp_path / "theirs", dht=False,
        coop="bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", extra=FLAGS,
    ).start()
    try:
        append(ours, "self", "ours only")
        theirs.connect(ours)
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(theirs, "POST", f"/ledger/sync?peer={ours.peer_id}")
        assert refused.value.code == 503
        assert api(theirs, "GET", "/ledger")["size"] == 0
        assert api(ours, "GET", "/ledger")["size"] == 1
    finally:
        ours.stop()
        theirs.stop()


def test_an_equivocation_reaches_every_node_and_freezes_the_feed(tmp_path: Path) -> None:
    """Two entries for one seq, handed to two different nodes: every node ends with both
    (the fork proof), the feed frozen after the last common entry, and nothing after."""
    import base64

    from nacl.signing import SigningKey

    from ledger.entry import sign_entry

    def submit(node: DaemonProcess, data: bytes) -> str:
        import urllib.request

        token = (node.data / "api_token").read_text().strip()
        request = urllib.request.Request(
            f"{node.api}/api/chorus/v1/ledger/submit", data=data, method="POST",
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["verdict"]

    nodes: list[DaemonProcess] = []
    try:
        for i in range(3):
            boot = [nodes[-1].addr] if nodes else []  # a line: 0 - 1 - 2
            nodes.append(DaemonProcess(tmp_path / f"n{i}", bootstrap=boot, dht=False, coop=COOP,
                                       extra=FLAGS).start())
        liar = SigningKey.generate()
        now = int(time.time() * 1000)
        first = sign_entry(liar, 1, None, now, "note", {"text": "the truth"})
        second = sign_entry(liar, 2, first.id_bytes, now, "note", {"text": "more"})
        other = sign_entry(liar, 2, first.id_bytes, now, "note", {"text": "another story"})
        assert submit(nodes[0], first.encoded) == "append"
        wait_for(lambda: all(api(n, "GET", "/ledger")["size"] == 1 for n in nodes),
                 timeout=30, what="the first entry everywhere")
        assert submit(nodes[0], second.encoded) == "append"
        assert submit(nodes[2], other.encoded) == "append"  # node 2 has not seen `second`

        def frozen_everywhere() -> bool:
            for node in nodes:
                feeds = api(node, "GET", "/ledger/heads")["feeds"]
                mine = [f for f in feeds if f["author"] == bytes(liar.verify_key).hex()]
                if not mine or mine[0]["frozen_after"] != 1:
                    return False
                if api(node, "GET", "/ledger")["size"] != 3:
                    return False
            return True

        wait_for(frozen_everywhere, timeout=60, interval=0.5,
                 what="every node to hold both seq-2 entries and freeze the feed")
        later = sign_entry(liar, 3, second.id_bytes, now, "note", {"text": "after the fork"})
        assert submit(nodes[1], later.encoded) == "frozen"
        for node in nodes:
            assert api(node, "GET", "/ledger")["counters"]["forks"] >= 1
            assert api(node, "POST", "/ledger/tree-head")["tree_head"] is not None
            report = api(node, "POST", "/ledger/verify")
            assert report["ok"] and not report["clean"]
            assert [f["rule"] for f in report["findings"]] == ["fork"]
            ids = {base64.b64decode(e["data"]) for e in api(node, "GET", "/ledger/log")["entries"]}
            assert {first.encoded, second.encoded, other.encoded} <= ids
    finally:
        for node in nodes:
            node.stop()


def test_entries_are_blocks_any_peer_can_fetch_by_id(tmp_path: Path) -> None:
    """An entry's id is a CIDv1 raw block: a peer outside the co-op fetches it over
    Bitswap with a plain `block/get`, and the bytes hash to the id."""
    import base64

    from ledger.entry import entry_id_bytes
    from ledger.jsonview import id_text
    from node.client import DaemonClient

    writer = DaemonProcess(tmp_path / "writer", dht=False, coop=COOP, extra=FLAGS).start()
    outsider = DaemonProcess(tmp_path / "outsider", dht=False).start()
    try:
        entry_id = append(writer, "self", "fetch me as a block")
        outsider.connect(writer)
        data = b"".join(DaemonClient(outsider.api).stream("block/get", {"arg": entry_id}))
        stored = api(writer, "GET", f"/ledger/entries/{entry_id}")
        assert data == base64.b64decode(stored["data"])
        assert id_text(entry_id_bytes(data)) == entry_id
    finally:
        writer.stop()
        outsider.stop()
