"""A real Helia peer (tests/helia/peer.mjs) on 127.0.0.1, and the early interop check:
py-libp2p 0.8.1 and Helia (js-libp2p 3) talk at the transport level.

(a) Two Helia peers exchange a file over Bitswap: proves the harness.
(b) A py-libp2p host dials Helia: TCP + Noise + Yamux, identify both ways, ping both ways.
(c) Helia dials the py-libp2p host: the same, the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.varint import read_length_prefixed_protobuf
from multiaddr import Multiaddr

from tests.helia_peer import HeliaError, HeliaPeer
from tests.vectors.content import deterministic_chunks

pytestmark = [pytest.mark.helia, pytest.mark.integration]

VECTORS = Path(__file__).resolve().parent / "vectors" / "unixfs.json"
IDENTIFY = TProtocol("/ipfs/id/1.0.0")
PING = TProtocol("/ipfs/ping/1.0.0")
BITSWAP_120 = "/ipfs/bitswap/1.2.0"

logging.getLogger("libp2p").setLevel(logging.ERROR)


def vector(name: str) -> dict:
    files = json.loads(VECTORS.read_text(encoding="utf-8"))["files"]
    return next(f for f in files if f["name"] == name)


def sha256_of(size: int, seed: str) -> str:
    h = hashlib.sha256()
    for piece in deterministic_chunks(size, seed):
        h.update(piece)
    return h.hexdigest()


# -- (a) the harness: Helia <-> Helia ---------------------------------------------------------


def test_two_helia_peers_exchange_a_file_over_bitswap() -> None:
    ten = vector("10-mib")  # 41 blocks in both profiles
    small = vector("chunk-plus-1")  # 3 blocks
    with HeliaPeer() as a, HeliaPeer() as b:
        assert a.versions["helia"].split(".")[0] == "7"
        assert a.versions["node"].split(".")[0] == "22"
        assert a.peer_id != b.peer_id
        for peer in (a, b):
            assert peer.multiaddrs
            for addr in peer.multiaddrs:
                assert addr.startswith("/ip4/127.0.0.1/tcp/")
                assert addr.endswith(f"/p2p/{peer.peer_id}")

        # b imports like `ipfs add`: the CIDs are Kubo's (tests/vectors/unixfs.json)
        cid_v0 = b.add(size=ten["size"], seed=ten["seed"])
        assert cid_v0 == ten["cids"]["kubo-v0"]
        cid_raw = b.add(size=small["size"], seed=small["seed"], profile="v1-raw")
        assert cid_raw == small["cids"]["v1-raw"]
        assert b.add(text="hello world\n") == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        assert b.has(cid_v0)
        assert not a.has(cid_v0)

        conn = a.connect(b.multiaddr)
        assert conn["peer"] == b.peer_id
        assert conn["encryption"] == "/noise"
        assert conn["muxer"] == "/yamux/1.0.0"
        assert b.peer_id in a.peers()

        started = time.monotonic()
        assert a.cat(cid_v0, timeout_ms=60_000) == (
            sha256_of(ten["size"], ten["seed"]),
            ten["size"],
        )
        elapsed = time.monotonic() - started
        assert a.has(cid_v0)  # fetched blocks are kept
        assert a.cat(cid_raw, timeout_ms=30_000) == (
            sha256_of(small["size"], small["seed"]),
            small["size"],
        )
        print(f"Helia->Helia bitswap: 10 MiB in {elapsed:.2f} s")

        # an error is an answer, not a crash: a CID nobody has, with a short timeout
        missing = a.add(text="only a has this\n")
        with pytest.raises(HeliaError):
            b.cat(unknown_cid(), timeout_ms=300)
        with pytest.raises(HeliaError, match="unknown command"):
            b.request({"frobnicate": True})
        assert a.peer_id in b.peers()  # b is still alive and connected
        assert b.cat(missing, timeout_ms=10_000)[1] == len("only a has this\n")


def unknown_cid() -> str:
    """A raw-leaf CIDv1 of bytes no peer holds."""
    digest = hashlib.sha256(b"nobody has this block %f" % time.time()).digest()
    return "b" + base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().lower().rstrip("=")


# -- (b), (c) py-libp2p 0.8.1 <-> Helia ---------------------------------------------------------


@asynccontextmanager
async def py_host() -> AsyncIterator[IHost]:
    """A py-libp2p host as chorus will run it: Ed25519 identity, Noise, Yamux preferred,
    one connection per peer (no 250 ms dial delay), TCP on 127.0.0.1."""
    host = new_host(
        key_pair=create_new_key_pair(),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            yield host
        finally:
            await host.close()


async def identify_of(host: IHost, peer: ID) -> Identify:
    """Ask `peer` for its identify message over a new /ipfs/id/1.0.0 stream."""
    stream = await host.new_stream(peer, [IDENTIFY])
    try:
        with trio.fail_after(10):
            data = await read_length_prefixed_protobuf(stream, use_varint_format=True)
    finally:
        await stream.close()
    msg = Identify()
    msg.ParseFromString(data)
    return msg


def check_helia_identify(msg: Identify, helia: HeliaPeer) -> None:
    # the public key in identify is the one the peer id names (and Noise authenticated)
    assert str(ID.from_pubkey(deserialize_public_key(msg.public_key))) == helia.peer_id
    assert "js-libp2p" in msg.agent_version or "helia" in msg.agent_version
    assert {str(IDENTIFY), str(PING), BITSWAP_120} <= set(msg.protocols)
    listen = {str(Multiaddr(a)) for a in msg.listen_addrs}
    assert any(m.startswith(f"{a}/p2p/") for m in helia.multiaddrs for a in listen)


async def test_py_libp2p_dials_helia() -> None:
    with HeliaPeer() as helia:
        helia_id = ID.from_base58(helia.peer_id)
        async with py_host() as host:
            started = time.monotonic()
            await host.connect(info_from_p2p_addr(Multiaddr(helia.multiaddr)))
            connect_s = time.monotonic() - started

            # the transport: TCP + Noise (Helia's word) + Yamux (both words)
            conns = host.get_network().get_connections(helia_id)
            assert len(conns) == 1
            assert type(conns[0].muxed_conn).__name__ == "Yamux"
            info = await trio.to_thread.run_sync(helia.wait_for_peer, str(host.get_id()))
            [conn] = info["connections"]
            assert conn["direction"] == "inbound"
            assert conn["encryption"] == "/noise"
            assert conn["muxer"] == "/yamux/1.0.0"

            # identify, py -> Helia: what Helia says about itself
            check_helia_identify(await identify_of(host, helia_id), helia)
            # identify, Helia -> py: Helia ran it on connect and stored the answer
            assert info["agentVersion"].startswith("py-libp2p/")
            assert {str(IDENTIFY), str(PING)} <= set(info["protocols"])
            assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in info["addrs"])

            # ping both ways over the one connection
            rtts = await PingService(host).ping(helia_id, ping_amt=3)
            assert len(rtts) == 3
            helia_rtt = await trio.to_thread.run_sync(helia.ping, str(host.get_id()))
            assert helia_rtt >= 0
            assert len(host.get_network().get_connections(helia_id)) == 1
            print(
                f"py->Helia: connect {connect_s * 1000:.0f} ms, py ping {rtts} ms, "
                f"Helia ping {helia_rtt} ms"
            )


async def test_helia_dials_py_libp2p() -> None:
    with HeliaPeer() as helia:
        helia_id = ID.from_base58(helia.peer_id)
        async with py_host() as host:
            py_addr = f"{host.get_addrs()[0]}"
            if "/p2p/" not in py_addr:
                py_addr += f"/p2p/{host.get_id()}"
            started = time.monotonic()
            # off the event loop: the py host must answer Helia's dial meanwhile
            conn = await trio.to_thread.run_sync(helia.connect, py_addr)
            connect_s = time.monotonic() - started
            assert conn["peer"] == str(host.get_id())
            assert conn["direction"] == "outbound"
            assert conn["encryption"] == "/noise"
            assert conn["muxer"] == "/yamux/1.0.0"

            # the py host sees the inbound connection
            with trio.fail_after(5):
                while not host.get_network().get_connections(helia_id):
                    await trio.sleep(0.02)
            [py_conn] = host.get_network().get_connections(helia_id)
            assert type(py_conn.muxed_conn).__name__ == "Yamux"
            assert str(host.get_id()) in await trio.to_thread.run_sync(helia.peers)

            # identify both ways, ping both ways
            info = await trio.to_thread.run_sync(helia.wait_for_peer, str(host.get_id()))
            assert info["agentVersion"].startswith("py-libp2p/")
            check_helia_identify(await identify_of(host, helia_id), helia)
            helia_rtt = await trio.to_thread.run_sync(helia.ping, str(host.get_id()))
            rtts = await PingService(host).ping(helia_id, ping_amt=3)
            assert len(rtts) == 3
            assert len(host.get_network().get_connections(helia_id)) == 1
            print(
                f"Helia->py: connect {connect_s * 1000:.0f} ms, Helia ping {helia_rtt} ms, "
                f"py ping {rtts} ms"
            )
