"""Several real daemons on 127.0.0.1: content found and fetched across the swarm."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest

from tests.daemons import DaemonProcess, daemons, wait_for

pytestmark = pytest.mark.integration


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_get_on_c_which_knows_only_b_finds_a(tmp_path):
    track = tmp_path / "track.bin"
    track.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    with daemons(tmp_path, 3, chain=True) as (a, b, c):
        cid = a.add(track)
        wait_for(lambda: a.bitswap_stat() is not None, what="A's API")
        out = tmp_path / "got.bin"
        # C was told only of B, and B does not have the file: C finds A through the
        # DHT (provider record A put on B, or A met through B's routing table).
        assert c.bootstrap == [b.addr]
        time.sleep(1.5)  # A's provider record reaches B
        c.cli("get", cid, "-o", str(out), timeout=60)
        assert sha(out) == sha(track)
        assert b.bitswap_stat()["DataSent"] == 0


def test_twenty_mib_from_four_providers(tmp_path):
    track = tmp_path / "album.bin"
    track.write_bytes(os.urandom(20 * 1024 * 1024))
    with daemons(tmp_path, 5) as nodes:
        providers, fetcher = nodes[:4], nodes[4]
        cids = {p.add(track) for p in providers}
        assert len(cids) == 1
        cid = cids.pop()
        for provider in providers:
            fetcher.connect(provider)
        out = tmp_path / "got.bin"
        fetcher.cli("get", cid, "-o", str(out))
        assert sha(out) == sha(track)
        ledgers = fetcher.bitswap_stat()["Ledgers"]
        served = {p: e["DataReceived"] for p, e in ledgers.items() if e["DataReceived"]}
        assert len(served) >= 2, f"blocks came from only {served}"
        assert sum(served.values()) >= 20 * 1024 * 1024


def test_fetch_completes_when_a_provider_dies_mid_transfer(tmp_path):
    track = tmp_path / "long.bin"
    track.write_bytes(os.urandom(48 * 1024 * 1024))
    with daemons(tmp_path, 3) as (p1, p2, fetcher):
        cid = p1.add(track)
        assert p2.add(track) == cid
        fetcher.connect(p1)
        fetcher.connect(p2)
        out = tmp_path / "got.bin"
        result: dict = {}

        def fetch() -> None:
            result["r"] = fetcher.cli("get", cid, "-o", str(out), check=False, timeout=120)

        thread = threading.Thread(target=fetch)
        thread.start()
        wait_for(
            lambda: fetcher.bitswap_stat()["DataReceived"] > 4 * 1024 * 1024,
            timeout=60, interval=0.05, what="the transfer to start",
        )
        p1.kill()
        thread.join(120)
        assert result["r"].returncode == 0, result["r"].stderr.decode()
        assert sha(out) == sha(track)


def test_restart_keeps_the_peer_id_and_shuts_down_cleanly(tmp_path):
    node = DaemonProcess(tmp_path / "node").start()
    first = node.peer_id
    assert node.stop() == 0
    assert "daemon stopped" in node.log[-1]
    assert not (tmp_path / "node" / "api").exists()
    node.start()
    try:
        assert node.peer_id == first
        assert node.cli_json("id", "--json")["ID"] == first
    finally:
        node.stop()


def test_sigint_exits_zero_without_traceback(tmp_path):
    node = DaemonProcess(tmp_path / "node").start()
    node.proc.send_signal(signal.SIGINT)
    node.proc.wait(15)
    assert node.proc.returncode == 0
    assert not any("Traceback" in line for line in node.log)
    node.proc = None


def test_cli_works_offline_and_through_the_daemon(tmp_path):
    track = tmp_path / "t.bin"
    track.write_bytes(os.urandom(700_000))
    node = DaemonProcess(tmp_path / "node")
    offline = node.add(track)
    node.start()
    try:
        assert node.add(track) == offline
        assert node.cli("cat", offline).stdout == track.read_bytes()
        pins = node.cli_json("pin", "ls", "--json")["Keys"]
        assert pins[offline]["Type"] == "recursive"
    finally:
        node.stop()
    assert node.cli("cat", offline).stdout == track.read_bytes()


def test_gossip_crosses_a_chain_of_daemons(tmp_path):
    """200 signed entries published on A reach C through B, and C's ledger keeps them."""
    from nacl.signing import SigningKey

    from ledger.entry import sign_entry
    from node.client import DaemonClient

    coop = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    key, prev, items = SigningKey.generate(), None, []
    for seq in range(1, 201):
        entry = sign_entry(key, seq, prev, int(time.time() * 1000), "note", {"text": f"#{seq}"})
        prev = entry.id_bytes
        items.append(entry.encoded)
    with daemons(tmp_path, 3, chain=True, coop=coop, dht=False) as (a, b, c):
        api_a, api_c = DaemonClient(a.api), DaemonClient(c.api)
        topic = api_a.call("pubsub/ls")["Strings"][0]
        wait_for(lambda: len(DaemonClient(b.api).call("gossip/stat")["MeshPeers"]) >= 2,
                 what="B's mesh to hold A and C")
        for item in items:
            api_a._request("pubsub/pub", {"arg": topic}, body=item).read()
        wait_for(lambda: api_c.call("gossip/stat")["Counters"]["received"] >= len(items),
                 timeout=30, what="C to receive every item")
        assert api_c.call("gossip/stat")["Counters"]["received"] == len(items)
        heads = wait_for(
            lambda: [f for f in c.chorus_api("GET", "/ledger/heads")["feeds"] if f["seq"] == 200],
            timeout=30, what="C's ledger to hold the whole feed",
        )
        assert heads[0]["author"] == bytes(key.verify_key).hex()
