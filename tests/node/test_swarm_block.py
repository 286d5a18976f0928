"""The operator's peer block list (`chorus swarm block`, node/swarm_blocklist.py).

From the inside out: the exact peer ID rule the API's schema states (node/peer_ids.py),
the list itself (all or nothing, bounded), the gate on two real py-libp2p hosts in
this process (a blocked peer can neither dial in nor be dialled, its streams never
reach a handler, blocking a connected peer closes it, unblocking lets it back), then
three real daemons driven through the CLI and the HTTP API, including the
bootstrap redial loop and hostile requests to the endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr
from nacl.signing import SigningKey

from node.chorus_api import API_PREFIX
from node.host import Penalties, build_host
from node.peer_ids import PEER_ID_PATTERN, InvalidPeerId, b58encode, parse_peer_id
from node.swarm_api import MAX_PEERS_PER_REQUEST
from node.swarm_blocklist import (
    BlocklistFull,
    SwarmBlocklist,
    block_and_disconnect,
    install_gate,
    unblock,
)
from tests.daemons import DaemonProcess, wait_for
from tests.node.test_auth import bearer, request, token_of
from tests.node.test_coop_swarm import start_all

COOP = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
FLAGS = ("--sync-interval", "2", "--tree-head-interval", "0")


# -- peer IDs: the schema's pattern is exactly what the parser takes --------------------------


def test_real_peer_ids_match_and_round_trip() -> None:
    ids = [ID.from_pubkey(create_new_key_pair().public_key) for _ in range(100)]
    ids += [ID.from_pubkey(create_secp256k1_key_pair().public_key) for _ in range(20)]
    ids.append(ID.from_base58("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"))  # RSA
    for peer in ids:
        text = str(peer)
        assert parse_peer_id(text) == peer
        assert b58encode(peer.to_bytes()) == text


@settings(max_examples=200, deadline=None)
@given(st.from_regex(PEER_ID_PATTERN, fullmatch=True))
def test_every_string_the_pattern_allows_is_a_peer_id(text: str) -> None:
    raw = parse_peer_id(text).to_bytes()
    assert b58encode(raw) == text
    assert raw[:6] in (bytes.fromhex("002408011220"), bytes.fromhex("002508021221")) or (
        raw[:2] == bytes.fromhex("1220") and len(raw) == 34
    )


@pytest.mark.parametrize(
    ("prefix", "free", "low", "high"),
    [("002408011220", 32, 0x00, 0xFF), ("002508021221", 33, 0x02, 0x03), ("1220", 32, 0, 0xFF)],
)
def test_the_pattern_ends_exactly_at_the_range(prefix: str, free: int, low: int, high: int) -> None:
    """The first and last peer ID of each kind match; one value beyond either does not."""
    head = bytes.fromhex(prefix)
    size = len(head) + free
    first = int.from_bytes(head + bytes([low]) + bytes(free - 1), "big")
    last = int.from_bytes(head + bytes([high]) + b"\xff" * (free - 1), "big")
    for value, valid in ((first, True), (last, True), (first - 1, False), (last + 1, False)):
        text = b58encode(value.to_bytes(size, "big"))
        if valid:
            parse_peer_id(text)
        else:
            with pytest.raises(InvalidPeerId):
                parse_peer_id(text)


@pytest.mark.parametrize(
    "text",
    ["", "not-a-peer", "12D3KooW", "12D3KooW" + "z" * 44, "Qm" + "1" * 44, "0" * 52,
     "12D3KooWGRUVh7Yfbn9RFJN6EcqG6ViPsSLEjPNwq6rJnTB6bNZL\n", " " + "Qm" * 23, "é" * 46],
)
def test_what_is_not_a_peer_id(text: str) -> None:
    with pytest.raises(InvalidPeerId) as refused:
        parse_peer_id(text)
    assert "not a peer ID" in str(refused.value)


# -- the list ----------------------------------------------------------------------------------


def _peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


def test_blocking_is_all_or_nothing_and_bounded() -> None:
    blocklist = SwarmBlocklist(capacity=3, clock=lambda: 1.5)
    a, b, c, d = (_peer() for _ in range(4))
    assert blocklist.block([a, a, b]) == [a, b]
    assert blocklist.block([b]) == []  # already blocked: not an error, not added
    with pytest.raises(BlocklistFull):
        blocklist.block([c, d])
    assert len(blocklist) == 2 and not blocklist.is_blocked(c)  # nothing changed
    assert blocklist.block([c]) == [c]
    assert [e.peer for e in blocklist.entries()] == sorted([a, b, c], key=str)
    assert {e.since_ms for e in blocklist.entries()} == {1500}
    assert blocklist.unblock([d, a, a]) == [a]
    assert not blocklist.is_blocked(a) and blocklist.is_blocked(b)


def test_penalties_refuse_banned_and_blocked_peers_but_keep_them_apart() -> None:
    blocklist = SwarmBlocklist()
    penalties = Penalties(blocklist=blocklist)
    banned, blocked = _peer(), _peer()
    penalties.penalise(banned, "sent garbage")
    blocklist.block([blocked])
    assert penalties.refuses(banned) and penalties.refuses(blocked)
    assert not penalties.is_banned(blocked) and blocked not in penalties.strikes
    assert not blocklist.is_blocked(banned)


# -- the gate on two real hosts ------------------------------------------------------------------

ECHO = TProtocol("/chorus-test/echo/1")


async def test_the_gate_refuses_a_blocked_peer_both_ways() -> None:
    a, b = build_host(SigningKey.generate()), build_host(SigningKey.generate())
    blocklist = SwarmBlocklist()
    install_gate(a, blocklist)
    served: list[ID] = []

    async def echo(stream) -> None:
        served.append(stream.muxed_conn.peer_id)
        await stream.write(await stream.read(100))
        await stream.close()

    a.set_stream_handler(ECHO, echo)
    listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
        try:
            a_info = info_from_p2p_addr(a.get_addrs()[0])
            b_info = info_from_p2p_addr(b.get_addrs()[0])
            blocklist.block([b.get_id()])

            # Inbound: B's handshake completes, but A closes the connection before
            # registering it, so no stream of B's reaches A's handler.
            with trio.fail_after(10):
                with contextlib.suppress(SwarmException):  # or "connected", then closed
                    await b.connect(a_info)
                try:
                    stream = await b.new_stream(a.get_id(), [ECHO])
                    await stream.write(b"x")
                    echoed = await stream.read(1)
                except Exception:  # noqa: BLE001 - no connection, reset, EOF: all refusals
                    echoed = b""
                assert echoed == b""
                while b.get_connected_peers():
                    await trio.sleep(0.05)
            assert a.get_connected_peers() == [] and served == []
            assert blocklist.refused_connections >= 1

            # Outbound: A does not even dial.
            with pytest.raises(SwarmException, match="blocked by this node's operator"):
                await a.connect(b_info)
            assert blocklist.refused_dials == 1

            # Unblocked: B connects and is served.
            unblock(a, blocklist, [b.get_id()])
            with trio.fail_after(10):
                await b.connect(a_info)
                stream = await b.new_stream(a.get_id(), [ECHO])
                await stream.write(b"hello")
                assert await stream.read(100) == b"hello"
            assert served == [b.get_id()]

            # Blocking a connected peer closes its connection at once.
            with trio.fail_after(10):
                added, closed = await block_and_disconnect(a, blocklist, [b.get_id()])
            assert added == closed == [b.get_id()]
            assert a.get_connected_peers() == []
        finally:
            await a.close()
            await b.close()


# -- three daemons: CLI, bootstrap redial, gossip, hostile requests --------------------------


def _connected(node: DaemonProcess, other: DaemonProcess) -> bool:
    """`swarm peers` over the RPC, in this process (a CLI start per poll is slow)."""
    peers = request(node.api, "POST", "/api/v0/swarm/peers").json()["Peers"] or []
    return any(p["Peer"] == other.peer_id for p in peers)


def _api(node: DaemonProcess, method: str, path: str, body: bytes | None = None,
         token: bool = True):
    headers = bearer(token_of(node)) if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return request(node.api, method, API_PREFIX + path, headers=headers, body=body)


def _note(node: DaemonProcess, text: str) -> str:
    return node.chorus_api("POST", "/ledger/entries",
                           {"key": "self", "kind": "note", "body": {"text": text}})["id"]


def _has(node: DaemonProcess, entry: str) -> bool:
    import urllib.error

    try:
        node.chorus_api("GET", f"/ledger/entries/{entry}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return True


@pytest.mark.integration
def test_block_and_unblock_three_daemons(tmp_path: Path) -> None:
    a = DaemonProcess(tmp_path / "a", dht=False, coop=COOP, extra=FLAGS)
    a.start()
    # B keeps A as a bootstrap peer: its redial loop keeps trying all along.
    b = DaemonProcess(tmp_path / "b", dht=False, coop=COOP, extra=FLAGS, bootstrap=[a.addr])
    c = DaemonProcess(tmp_path / "c", dht=False, coop=COOP, extra=FLAGS)
    nodes = [a, b, c]
    try:
        start_all([b, c])
        c.connect(a)
        c.connect(b)
        wait_for(lambda: _connected(a, b), timeout=30, what="B to dial its bootstrap peer A")

        started = time.monotonic()
        printed = a.cli("swarm", "block", b.peer_id).stdout.decode()
        block_took = time.monotonic() - started
        assert printed == f"blocked {b.peer_id} (connections closed)\n"
        assert not _connected(a, b)  # closed before the command returned
        wait_for(lambda: not _connected(b, a), timeout=20, what="B to see the connection gone")
        again = a.cli("swarm", "block", b.peer_id, "--json").stdout
        assert json.loads(again) == {"added": [], "disconnected": [], "blocked": 1}

        # A refuses to dial B, with a message that says why.
        refused = a.cli("swarm", "connect", b.addr, check=False)
        assert refused.returncode != 0
        assert b"blocked by this node's operator" in refused.stderr

        # B dials A (explicitly, and its bootstrap loop at 1, 2, 4 s): every connection
        # is closed as it opens; none lasts.
        b.cli("swarm", "connect", a.addr, check=False)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert not _connected(a, b)
            time.sleep(0.5)
        listing = a.cli_json("swarm", "blocked", "--json")
        assert [p["peer_id"] for p in listing["peers"]] == [b.peer_id]
        assert listing["peers"][0]["connected"] is False
        assert abs(listing["peers"][0]["since"] / 1000 - time.time()) < 120
        assert listing["refused_dials"] >= 1 and listing["refused_connections"] >= 2
        assert a.cli("swarm", "blocked").stdout.decode().startswith(f"{b.peer_id}  since ")

        # A block cuts connections, not the co-op: B's entry reaches A through C.
        note = _note(b, "from B, around the block")
        wait_for(lambda: _has(a, note), timeout=30, what="B's entry to reach A through C")
        assert _connected(c, a) and _connected(c, b) and not _connected(a, b)

        # Unblock: the next dial succeeds (the bootstrap loop's or this one).
        printed = a.cli("swarm", "unblock", b.peer_id, c.peer_id).stdout.decode()
        assert printed == f"unblocked {b.peer_id}\n{c.peer_id} was not blocked\n"
        b.connect(a)
        wait_for(lambda: _connected(a, b) and _connected(b, a), timeout=20,
                 what="A and B to be connected again")
        assert a.cli_json("swarm", "blocked", "--json")["peers"] == []
        print(f"block with disconnect via the CLI: {block_took:.2f} s")
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.integration
def test_the_endpoint_refuses_hostile_requests(tmp_path: Path) -> None:
    node = DaemonProcess(tmp_path / "n", dht=False).start()
    try:
        good = str(_peer())
        cases = [
            (b'{"peers": ["not-a-peer"]}', "not a peer ID"),
            (json.dumps({"peers": [good, "12D3KooW" + "z" * 44]}).encode(), "not a peer ID"),
            (json.dumps({"peers": [good, 42]}).encode(), "a peer ID is text"),
            (b'{"peers": []}', "at least one peer"),
            (b'{"peers": "' + good.encode() + b'"}', "at least one peer"),
            (json.dumps({"peers": [good], "forever": True}).encode(), 'unknown member "forever"'),
            (b'{"peer": []}', "JSON object"),
            (b"[1, 2]", "JSON object"),
            (b"\xff\xfe", "not JSON"),
            (b"", "not JSON"),
            (json.dumps({"peers": [str(_peer()) for _ in range(MAX_PEERS_PER_REQUEST + 1)]})
             .encode(), f"at most {MAX_PEERS_PER_REQUEST}"),
            (json.dumps({"peers": ["x" * 100_000]}).encode(), "not a peer ID"),
        ]
        for body, reason in cases:
            answer = _api(node, "POST", "/swarm/blocked", body)
            assert answer.status == 400, (body[:80], answer.body)
            error = answer.json()["error"]
            assert error["code"] == "bad_request" and reason in error["message"], error
        answer = _api(node, "POST", "/swarm/blocked?forever=1",
                      json.dumps({"peers": [good]}).encode())
        assert answer.status == 400 and "'forever'" in answer.json()["error"]["message"]
        answer = _api(node, "POST", "/swarm/blocked", json.dumps({"peers": [node.peer_id]})
                      .encode())
        assert answer.status == 409 and answer.json()["error"]["code"] == "self"
        # Writes need the token; reads do not.
        answer = _api(node, "POST", "/swarm/blocked", json.dumps({"peers": [good]}).encode(),
                      token=False)
        assert answer.status == 401
        for query, reason in [
            ("", "at least one peer"),
            ("?peer=nope", "not a peer ID"),
            (f"?peer={good}&all=1", "'all'"),
            ("?" + "&".join(f"peer={_peer()}" for _ in range(MAX_PEERS_PER_REQUEST + 1)),
             f"at most {MAX_PEERS_PER_REQUEST}"),
        ]:
            answer = _api(node, "DELETE", "/swarm/blocked" + query)
            assert answer.status == 400 and reason in answer.json()["error"]["message"], query
        assert _api(node, "DELETE", f"/swarm/blocked?peer={good}", token=False).status == 401
        assert _api(node, "GET", "/swarm/blocked?x=1").status == 400
        # None of that changed anything.
        listing = _api(node, "GET", "/swarm/blocked", token=False).json()
        assert listing["peers"] == [] and listing["capacity"] == 4096

        # The CLI says what the daemon said.
        refused = node.cli("swarm", "block", "not-a-peer", check=False)
        assert refused.returncode == 1 and b"not a peer ID" in refused.stderr

        # A full request of valid IDs is fine; unblocking them answers what was blocked.
        many = [str(_peer()) for _ in range(MAX_PEERS_PER_REQUEST)]
        answer = _api(node, "POST", "/swarm/blocked", json.dumps({"peers": many}).encode())
        assert answer.status == 200 and answer.json()["blocked"] == MAX_PEERS_PER_REQUEST
        query = "&".join(f"peer={p}" for p in [*many[:3], good])
        answer = _api(node, "DELETE", f"/swarm/blocked?{query}")
        assert answer.json() == {"removed": many[:3], "blocked": MAX_PEERS_PER_REQUEST - 3}
        assert os.path.exists(node.data / "api")  # still running
    finally:
        node.stop()
