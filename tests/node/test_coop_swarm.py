"""The co-op end to end on loopback, as its members would run it: three daemons, a
board that admits an artist and a listener, a treasury that tops the listener up, a
release published on node A and pinned by B, plays through node C whose blocks come
from A and B, and the same books on all three nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.sample_audio import synth_track
from tests.daemons import DaemonProcess, init_in_coop, start_all, wait_for

#: No tree heads during the test: each node would sign its own at its own moment, and
#: the tallies (which count entries) would differ for as long as gossip takes.
QUIET = ["--tree-head-interval", "0", "--sync-interval", "2"]


def new_key(node: DaemonProcess, name: str) -> str:
    return node.cli_json("key", "new", name, "--json")["public_key"]


@pytest.mark.integration
def test_three_nodes_publish_play_and_agree(tmp_path: Path) -> None:
    # -- the co-op: board "board" and treasury "till" on node A ---------------------------
    a = DaemonProcess(tmp_path / "a", dht=False, extra=QUIET)
    a.cli("key", "new", "board")
    a.cli("key", "new", "till")
    artist = new_key(a, "artist")
    genesis_file = tmp_path / "swarm.genesis"
    created = a.cli_json("coop", "create", "--name", "Swarm", "--board", "board",
                         "--treasury", "till", "-o", str(genesis_file), "--json")
    for name in ("b", "c"):
        init_in_coop(tmp_path / name, genesis_file)
    b = DaemonProcess(tmp_path / "b", dht=False, extra=QUIET)
    c = DaemonProcess(tmp_path / "c", dht=False, extra=QUIET)
    listener = new_key(c, "listener")

    album = tmp_path / "album"
    album.mkdir()
    (album / "01 Swarm.wav").write_bytes(synth_track("swarm", 50.0))  # 2.2 MB: 9 chunks

    nodes = [a, b, c]
    try:
        start_all(nodes)
        for node in nodes:
            assert node.chorus_api("GET", "/coop")["id"] == created["id"]
        b.connect(a)
        c.connect(a)
        c.connect(b)

        # -- the board admits, the treasury tops up (on A; gossip carries them) ---------
        a.cli("member", "admit", artist, "--class", "artist", "--as", "board")
        a.cli("member", "admit", listener, "--class", "listener", "--as", "board")
        a.cli("wallet", "topup", listener, "10000", "--as", "till")

        # -- the artist publishes on A; B pins the track ---------------------------------
        release = a.cli_json("release", "publish", str(album), "--title", "Loopback",
                             "--as", "artist", "--json")
        track = release["tracks"][0]
        assert track["duration_ms"] == 50_000 and track["cid"].startswith("Qm")
        b.cli("pin", "add", track["cid"])
        assert a.cli_json("release", "verify", release["id"], "--json")["ok"] is True

        def c_knows_everything() -> bool:
            wallet = c.chorus_api("GET", f"/wallets/{listener}")
            status = c.chorus_api("GET", "/ledger")
            return wallet["balance"] == 10_000 and status["size"] >= 4

        wait_for(c_knows_everything, timeout=30, what="the release and top-up to reach C")
        listed = c.cli_json("release", "ls", "--json")["releases"]
        assert [r["id"] for r in listed] == [release["id"]]

        # -- the listener plays through C: blocks from A and B --------------------------
        first = c.cli_json("play", track["cid"], "--as", "listener", "--json")
        assert first["outcome"] == "paid" and first["price"] == 2000
        assert first["before"]["balance"] == 10_000 and first["after"]["balance"] == 8_000
        assert first["after"]["paid"] == 1 and first["after"]["plays_to_own"] == 9
        assert first["played_ms"] == 50_000 and first["bytes"] == track["size"]
        served = {host["peer"]: host["bytes"] for host in first["hosts"]}
        assert set(served) == {a.peer_id, b.peer_id}, first["hosts"]
        assert all(count > 0 for count in served.values())
        # Every verified byte of the track's DAG came from A or B (the file plus the
        # dag-pb framing of its blocks).
        assert track["size"] < sum(served.values()) < track["size"] + 4096
        assert {r["host"]: r["bytes"] for r in first["receipts"]} == served
        play_entry = c.chorus_api("GET", f"/ledger/entries/{first['play']}")
        assert sorted(play_entry["body"]["hosts"]) == sorted(served)
        assert play_entry["body"]["played_ms"] == 50_000

        # Ten seconds is under the 45 s a play needs to count: nothing is recorded.
        short = c.cli_json("play", track["cid"], "--as", "listener", "--seconds", "10",
                           "--json")
        assert short["counted"] is False and short["play"] is None
        assert short["played_ms"] == 10_000 and short["hosts"] == []

        # The second counted play costs 4,000 µc; the blocks are on C now.
        second = c.cli_json("play", track["cid"], "--as", "listener", "--json")
        assert second["outcome"] == "paid" and second["price"] == 4000
        assert second["after"]["balance"] == 4_000 and second["after"]["paid"] == 2
        assert second["hosts"] == [] and second["receipts"] == []

        # -- the same books everywhere ------------------------------------------------------
        expected = c.chorus_api("GET", "/ledger")["size"]

        def agreed() -> bool:
            if [node.chorus_api("GET", "/ledger")["size"] for node in nodes] != [expected] * 3:
                return False
            served_tallies = [node.chorus_api("GET", "/tally") for node in nodes]
            return served_tallies[0] == served_tallies[1] == served_tallies[2]

        wait_for(agreed, timeout=30, what="the three nodes' tallies to agree")
        printed = [node.cli("ledger", "tally", "--json").stdout for node in nodes]
        assert printed[0] == printed[1] == printed[2]
        books = json.loads(printed[0])
        assert books["coop"] == created["id"]
        assert books["anomalies"] == []
        assert books["balances"][listener] == 4_000
        assert books["members"] == {artist: "artist", listener: "listener"}
        plays = books["plays"][listener][track["cid"]]
        assert (plays["paid"], plays["spent"], plays["owned"]) == (2, 6000, False)
        assert books["earnings"] == {artist: 4200}  # 70% of 6,000 µc
        assert books["releases"][release["id"]] == {"earnings": 4200, "paid_plays": 2}
        (epoch, figures), = books["epochs"].items()
        assert int(epoch) == first["epoch"]
        assert figures["paid_plays"] == 6000 and figures["payees"] == 4200
        assert figures["coop"] == 1800 and figures["hosting_pool"] == 900
        # The pool is shared by acknowledged bytes (under the cap of 2,500 B per µc).
        assert figures["host_bytes"] == served
        total = sum(served.values())
        pay = {peer: 900 * count // total for peer, count in served.items()}
        assert figures["host_pay"] == pay and all(value > 0 for value in pay.values())
        assert figures["coop_retained"] == 900 + (900 - sum(pay.values()))
        assert figures["paid_plays"] == (
            figures["payees"] + figures["coop_retained"] + sum(figures["host_pay"].values())
        )
        print(json.dumps({"served": served, "host_pay": pay}, sort_keys=True))
    finally:
        for node in nodes:
            node.stop()
