"""Hostile Bitswap peers against a real `chorus daemon` (DESIGN.md: Network, Bad input).

Each hostile peer is a real py-libp2p host in this test process (trio, TCP, Noise,
Yamux) speaking Bitswap 1.2.0/1.1.0. The daemon under test (the "victim") dials it
with `swarm connect`; a `cat`/`get` on the victim for a track it lacks then makes its
engine ask the hostile peer: want-have (answered HAVE, so that it looks like a good
provider) and want-block, which the hostile peer answers on its own outbound stream,
as Bitswap peers do, with one kind of bad answer per test.

An honest daemon holds the tracks. Where a test says so the victim is connected to it
from the start; otherwise only once the hostile peer has been dealt with, and the
fetch that waited all along must then complete with the right bytes: the victim kept
serving, and nothing the hostile peer sent was kept.

Daemons start in parallel, once per module, one fresh victim per test, to keep the
module near a minute on two cores. Figures are printed (`-s` shows them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from multiformats import CID

from node.client import DaemonClient
from protocol.bitswap import (
    END_OF_STREAM,
    MAX_MESSAGE_SIZE,
    MAX_WANTLIST_ENTRIES,
    NEED_DATA,
    PROTOCOL_1_1_0,
    PROTOCOL_1_2_0,
    BlockPresence,
    FrameDecoder,
    Message,
    PresenceType,
    WantEntry,
    Wantlist,
    WantType,
    cid_from_prefix,
    decode_message,
    encode_frame,
    encode_message,
    prefix_of,
)
from protocol.cid import MAX_BLOCK_SIZE, make_cid
from protocol.varint import encode_uvarint
from tests.daemons import ROOT, DaemonProcess

pytestmark = pytest.mark.integration

logging.getLogger("libp2p").setLevel(logging.CRITICAL)

CHUNK = 256 * 1024
TRACK_SIZE = 5 * CHUNK + 1000  # six leaves and a root: seven blocks
TRACKS = (
    "mismatch",
    "malformed",
    "oversize",
    "unsolicited",
    "redial",
    "baseline",
    "during-flood",
    "withheld",
)
VICTIMS = 8
WAIT = 20.0
#: What an honest `chorus cat` of one track may take with a hostile peer around
#: (alone it takes 0.5-1 s here, most of it the CLI's own start-up).
CAT_BOUND = 5.0


# --- the daemons ---------------------------------------------------------------------


@dataclass
class Track:
    data: bytes
    cid: str
    blocks: int


@dataclass
class Fleet:
    honest: DaemonProcess
    tracks: dict[str, Track]
    victims: list[Future[DaemonProcess]]
    tmp: Path
    started: list[DaemonProcess] = field(default_factory=list)

    def victim(self) -> DaemonProcess:
        if self.victims:
            daemon = self.victims.pop(0).result()
        else:  # more tests than spares: start one now
            daemon = DaemonProcess(self.tmp / f"extra{len(self.started)}", dht=False).start()
        self.started.append(daemon)
        return daemon


def _start(path: Path) -> DaemonProcess:
    return DaemonProcess(path, dht=False).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("hostile")
    pool = ThreadPoolExecutor(max_workers=3)  # more at once only slows the first ones
    honest_future = pool.submit(_start, tmp / "honest")
    victims = [pool.submit(_start, tmp / f"victim{i}") for i in range(VICTIMS)]
    fleet: Fleet | None = None
    try:
        honest = honest_future.result()
        datas = {name: os.urandom(TRACK_SIZE) for name in TRACKS}
        paths = [tmp / f"{name}.bin" for name in TRACKS]
        for path, data in zip(paths, datas.values(), strict=True):
            path.write_bytes(data)
        cids = honest.cli("add", "-q", *map(str, paths)).stdout.decode().split()
        blocks = -(-TRACK_SIZE // CHUNK) + 1  # the leaves and a root
        tracks = {
            name: Track(data, cid, blocks)
            for (name, data), cid in zip(datas.items(), cids, strict=True)
        }
        fleet = Fleet(honest, tracks, victims, tmp)
        yield fleet
    finally:
        for future in victims:
            future.cancel()
        pool.shutdown(wait=True)  # lets starts under way finish, so they can be stopped
        running = [
            f.result()
            for f in [honest_future, *victims]
            if not f.cancelled() and f.exception() is None
        ]
        running += fleet.started if fleet is not None else []
        unique = list({id(d): d for d in running}.values())
        with ThreadPoolExecutor(max_workers=len(unique) or 1) as stopper:
            list(stopper.map(lambda d: d.stop(), unique))


@pytest.fixture
def victim(fleet: Fleet) -> DaemonProcess:
    return fleet.victim()


async def api(daemon: DaemonProcess, path: str, params: Any = None) -> Any:
    client = DaemonClient(daemon.api)
    return await trio.to_thread.run_sync(lambda: client.call(path, params, timeout=30))


async def connect(daemon: DaemonProcess, maddr: str) -> None:
    await api(daemon, "swarm/connect", {"arg": [maddr]})


async def swarm_peers(daemon: DaemonProcess) -> list[str]:
    return [p["Peer"] for p in (await api(daemon, "swarm/peers"))["Peers"]]


async def objects(daemon: DaemonProcess) -> int:
    return (await api(daemon, "repo/stat"))["NumObjects"]


async def ledger(daemon: DaemonProcess, peer: str) -> dict[str, int]:
    return (await api(daemon, "bitswap/stat"))["Ledgers"][peer]


async def penalty(daemon: DaemonProcess, peer: str) -> dict[str, Any] | None:
    return (await api(daemon, "bitswap/stat"))["Penalised"].get(peer)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
    deadline = trio.current_time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if trio.current_time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await trio.sleep(0.1)


async def penalised_and_gone(daemon: DaemonProcess, peer: str) -> dict[str, Any]:
    """The victim's penalty entry for `peer`, once it no longer lists it as connected."""
    entry = await eventually(lambda: penalty(daemon, peer), f"a penalty for {peer}")

    async def gone() -> bool:
        return peer not in await swarm_peers(daemon)

    await eventually(gone, f"{peer} to be disconnected")
    return entry


async def repo_is_clean(daemon: DaemonProcess, blocks: int) -> None:
    """`chorus repo verify` (the CLI, through the daemon) passes over exactly `blocks`."""
    result = await trio.to_thread.run_sync(lambda: daemon.cli("repo", "verify", "--json"))
    expected = {"Checked": blocks, "Corrupt": [], "Problems": [], "Ok": True}
    assert json.loads(result.stdout) == expected


class Cli:
    """A `chorus` command running against a daemon while the trio loop runs on."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--data", str(daemon.data), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.seconds = 0.0

    async def result(self, timeout: float = 60) -> bytes:
        try:
            with trio.fail_after(timeout):
                out, err = await trio.to_thread.run_sync(
                    self.proc.communicate, abandon_on_cancel=True
                )
        finally:
            self.kill()
        self.seconds = time.monotonic() - self.started
        assert self.proc.returncode == 0, (
            f"chorus {' '.join(self.args)} exited {self.proc.returncode}: {err.decode()}"
        )
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


@asynccontextmanager
async def cli(daemon: DaemonProcess, *args: str) -> AsyncIterator[Cli]:
    command = Cli(daemon, *args)
    try:
        yield command
    finally:
        command.kill()
        await trio.to_thread.run_sync(command.proc.wait)


async def timed_cat(daemon: DaemonProcess, track: Track) -> float:
    async with cli(daemon, "cat", track.cid) as command:
        out = await command.result(timeout=60)
    assert sha(out) == sha(track.data)
    return command.seconds


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def fetch_after_honest_joins(
    fleet: Fleet, victim: DaemonProcess, waiting: Cli, track: Track
) -> None:
    """Connect the honest daemon: the fetch that waited all along completes, right,
    and the victim holds exactly the track's blocks."""
    await connect(victim, fleet.honest.addr)
    out = await waiting.result(timeout=40)
    assert sha(out) == sha(track.data)
    print(f"\n  the waiting fetch completed {waiting.seconds:.2f}s after it started")
    assert await objects(victim) == track.blocks
    await repo_is_clean(victim, track.blocks)


# --- the hostile peer ----------------------------------------------------------------

Answer = Callable[["HostilePeer", ID, CID], Awaitable[None]]


def pb(number: int, body: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return encode_uvarint(number << 3 | 2) + encode_uvarint(len(body)) + body


def raw_frame(body: bytes) -> bytes:
    """A Bitswap frame without encode_frame's size check (hostile peers do not check)."""
    return encode_uvarint(len(body)) + body


def payload(prefix: bytes, data: bytes) -> bytes:
    """A Message with one payload block (field 3: {prefix = 1, data = 2})."""
    return pb(3, pb(1, prefix) + pb(2, data))


def wantlist_frame(count: int, marker: CID | None = None) -> bytes:
    """One message wanting `count` blocks nobody has (random raw CIDv1s, plain
    want-blocks), optionally followed by a want-have for `marker` with sendDontHave:
    its DONT_HAVE tells that the victim has processed the whole message. Built
    directly: encode_message takes ~0.25 s for 8192 entries, this ~20 ms."""
    digests = os.urandom(32 * count)
    entries = [
        pb(1, pb(1, b"\x01\x55\x12\x20" + digests[i : i + 32])) for i in range(0, 32 * count, 32)
    ]
    if marker is not None:  # field 4 (wantType) = Have, field 5 (sendDontHave) = true
        entries.append(pb(1, pb(1, bytes(marker)) + b"\x20\x01\x28\x01"))
    return raw_frame(pb(1, b"".join(entries)))


class HostilePeer:
    """A py-libp2p host that answers every want-block it gets with `answer` (none:
    it withholds). Want-haves get HAVE (DONT_HAVE with `has_nothing`).

    Everything it sends goes on its own outbound stream to the victim. What it gets
    is recorded; errors are kept, never raised (an exception escaping a stream
    handler would end the host).
    """

    def __init__(self, answer: Answer | None = None, *, has_nothing: bool = False) -> None:
        self.host = new_host(
            key_pair=create_new_key_pair(),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        self.answer = answer
        self.has_nothing = has_nothing
        self.asked: list[CID] = []
        self.answered = trio.Event()
        self.blocks: list[CID] = []
        self.dont_haves: set[bytes] = set()
        self.written = 0
        self.write_error: BaseException | None = None
        self.errors: list[BaseException] = []
        self._out: dict[tuple[ID, str], INetStream] = {}
        self._news = trio.Event()

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    @property
    def maddr(self) -> str:
        return str(self.host.get_addrs()[0])  # /ip4/127.0.0.1/tcp/N/p2p/<id>

    async def write(self, peer: ID, data: bytes, *, stream: str = "main") -> None:
        """Write on our outbound stream named `stream` (opened on first use)."""
        out = self._out.get((peer, stream))
        if out is None:
            # The victim dialled us: our side may not have finished upgrading that
            # connection yet when its `swarm connect` returns, and we cannot dial it.
            with trio.move_on_after(5):
                while peer not in self.host.get_connected_peers():
                    await trio.sleep(0.02)
            out = await self.host.new_stream(peer, [TProtocol(PROTOCOL_1_2_0)])
            self._out[(peer, stream)] = out
        await out.write(data)
        self.written += len(data)

    async def send(self, peer: ID, message: Message) -> None:
        await self.write(peer, encode_frame(encode_message(message, PROTOCOL_1_2_0)))

    async def dont_have(self, cid: CID, timeout: float = WAIT) -> None:
        with trio.fail_after(timeout):
            while bytes(cid) not in self.dont_haves:
                self._news = trio.Event()
                await self._news.wait()

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        decoder = FrameDecoder()
        try:
            while True:
                try:
                    data = await stream.read(1 << 20)
                except Exception:  # noqa: BLE001 - EOF or reset: the victim stopped
                    return
                if not data:
                    return
                decoder.receive_data(data)
                while (frame := decoder.next_message()) not in (NEED_DATA, END_OF_STREAM):
                    assert isinstance(frame, bytes)
                    await self._on_message(peer, decode_message(frame))
        except Exception as exc:  # noqa: BLE001 - the handler's error boundary
            self.errors.append(exc)

    async def _on_message(self, peer: ID, message: Message) -> None:
        self.blocks += [cid for cid, _ in message.blocks]
        for presence in message.presences:
            if presence.type == PresenceType.DONT_HAVE:
                self.dont_haves.add(bytes(presence.cid))
        self._news.set()
        for entry in message.wantlist.entries:
            if entry.cancel:
                continue
            if self.has_nothing:
                if entry.send_dont_have:
                    absent = BlockPresence(entry.cid, PresenceType.DONT_HAVE)
                    await self.send(peer, Message(presences=[absent]))
                continue
            if entry.want_type == WantType.HAVE:
                present = BlockPresence(entry.cid, PresenceType.HAVE)
                await self.send(peer, Message(presences=[present]))
                continue
            self.asked.append(entry.cid)
            if self.answer is None:
                continue
            try:
                await self.answer(self, peer, entry.cid)
            except Exception as exc:  # noqa: BLE001 - the victim hung up on us
                self.write_error = exc
            finally:
                self.answered.set()


@asynccontextmanager
async def hostile_peer(
    answer: Answer | None = None, *, has_nothing: bool = False
) -> AsyncIterator[HostilePeer]:
    """A running hostile peer on 127.0.0.1; its host is always closed.

    A failure in the body is re-raised once the host is closed, unwrapped from the
    exception group host.run()'s nursery would put it in.
    """
    peer = HostilePeer(answer, has_nothing=has_nothing)
    failure: Exception | None = None
    try:
        async with peer.host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            for protocol in (PROTOCOL_1_2_0, PROTOCOL_1_1_0):
                peer.host.set_stream_handler(TProtocol(protocol), peer.handle)
            try:
                yield peer
            except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                failure = exc
    finally:
        with trio.CancelScope(shield=True):
            await peer.host.close()
    if failure is not None:
        raise failure


# --- 1. bytes that do not match the CID ----------------------------------------------


async def test_wrong_bytes_for_a_wanted_cid(fleet: Fleet, victim: DaemonProcess, tmp_path):
    track = fleet.tracks["mismatch"]
    forged: list[CID] = []

    async def wrong_bytes(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        data = b"these are not the bytes of " + bytes(cid) + os.urandom(32)
        forged.append(cid_from_prefix(prefix_of(cid), data))  # what the victim will hash
        await peer.write(victim_id, raw_frame(payload(prefix_of(cid), data)))

    async with hostile_peer(wrong_bytes) as hostile:
        await connect(victim, fleet.honest.addr)
        await connect(victim, hostile.maddr)
        out = tmp_path / "got.bin"
        async with cli(victim, "get", track.cid, "-o", str(out)) as get:
            await get.result(timeout=40)
        print(f"\n  get with a lying peer connected: {get.seconds:.2f}s")
        assert out.read_bytes() == track.data
        assert hostile.asked, "the victim never asked the hostile peer for a block"
        assert forged

        entry = await penalised_and_gone(victim, hostile.peer_id)
        assert entry["Strikes"] == 1
        # The payload's CID is rebuilt from its bytes, so the lie arrives as a block
        # the peer was never asked for: the reason names that block.
        assert f"sent block {forged[0]}, which it was not asked for" in entry["Reason"]
        mine = await ledger(victim, hostile.peer_id)
        assert (mine["BlocksReceived"], mine["DataReceived"], mine["Unsolicited"]) == (0, 0, 1)
        assert (await ledger(victim, fleet.honest.peer_id))["BlocksReceived"] == track.blocks

        # Exactly the track's blocks were stored, each verifies: the forged one is not.
        assert await objects(victim) == track.blocks
        await repo_is_clean(victim, track.blocks)


# --- 2. malformed protobuf; a frame declaring more than 4 MiB -----------------------


async def test_malformed_frame_then_oversize_frame(fleet: Fleet, victim: DaemonProcess):
    track = fleet.tracks["malformed"]
    declared = 64 * 1024 * 1024

    async def malformed(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        # Message.payload (field 3) claims 200 bytes; the message has 3 left.
        await peer.write(victim_id, raw_frame(b"\x1a\xc8\x01" + b"abc"))

    async def too_long(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        # Declare 64 MiB, then stream it: the victim must hang up after the length.
        await peer.write(victim_id, encode_uvarint(declared))
        with trio.fail_after(WAIT):
            while peer.written < declared:
                await peer.write(victim_id, bytes(CHUNK))

    async with cli(victim, "cat", track.cid) as waiting:
        async with hostile_peer(malformed) as first:
            await connect(victim, first.maddr)
            entry = await penalised_and_gone(victim, first.peer_id)
            assert first.asked
            assert entry["Strikes"] == 1
            assert entry["Reason"].startswith("malformed bitswap message: "), entry
            assert "claims 200 bytes; only 3 remain" in entry["Reason"], entry
            assert await objects(victim) == 0

        async with hostile_peer(too_long) as second:
            await connect(victim, second.maddr)  # the waiting fetch asks it next
            entry = await penalised_and_gone(victim, second.peer_id)
            with trio.fail_after(WAIT):
                await second.answered.wait()
            assert entry["Strikes"] == 1
            assert (
                f"declares {declared} bytes; the limit is {MAX_MESSAGE_SIZE}" in (entry["Reason"])
            ), entry
            print(f"\n  the oversize-frame peer got {second.written} of {declared} bytes out")
            assert second.write_error is not None, "the victim never hung up"
            assert second.written < 8 * 1024 * 1024
            assert await objects(victim) == 0

        await fetch_after_honest_joins(fleet, victim, waiting, track)


# --- 3. a block over 2 MiB ------------------------------------------------------------


async def test_oversize_block(fleet: Fleet, victim: DaemonProcess):
    track = fleet.tracks["oversize"]
    size = MAX_BLOCK_SIZE + 1

    async def oversize(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        body = payload(prefix_of(cid), os.urandom(size))
        assert len(body) <= MAX_MESSAGE_SIZE  # the frame itself is within limits
        await peer.write(victim_id, raw_frame(body))

    async with cli(victim, "cat", track.cid) as waiting:
        async with hostile_peer(oversize) as hostile:
            await connect(victim, hostile.maddr)
            entry = await penalised_and_gone(victim, hostile.peer_id)
            assert hostile.asked
            assert entry["Strikes"] == 1
            assert f"is {size} bytes; the limit is {MAX_BLOCK_SIZE}" in entry["Reason"], entry
            assert await objects(victim) == 0
        await fetch_after_honest_joins(fleet, victim, waiting, track)


# --- 4. a flood of blocks nobody asked for --------------------------------------------


async def test_unsolicited_block_flood(fleet: Fleet, victim: DaemonProcess):
    track = fleet.tracks["unsolicited"]
    flood = [os.urandom(1024) + bytes([i]) for i in range(200)]

    async def unsolicited(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        # Not the wanted block: 200 valid blocks, one message each, as fast as it can.
        for data in flood:
            await peer.send(victim_id, Message(blocks=[(make_cid(data), data)]))

    async with cli(victim, "cat", track.cid) as waiting:
        async with hostile_peer(unsolicited) as hostile:
            await connect(victim, hostile.maddr)
            entry = await penalised_and_gone(victim, hostile.peer_id)
            with trio.fail_after(WAIT):
                await hostile.answered.wait()
            print(f"\n  the flooder got {hostile.written} bytes out before {hostile.write_error!r}")
            assert entry["Strikes"] == 1, "penalised again: the victim read on after the first"
            assert (
                f"sent block {make_cid(flood[0])}, which it was not asked for" in (entry["Reason"])
            ), entry
            mine = await ledger(victim, hostile.peer_id)
            assert (mine["Unsolicited"], mine["BlocksReceived"]) == (1, 0)
            assert await objects(victim) == 0
        await fetch_after_honest_joins(fleet, victim, waiting, track)


# --- a banned peer stays banned --------------------------------------------------------


async def test_banned_peer_is_neither_served_nor_redialled(fleet: Fleet, victim: DaemonProcess):
    """A peer that wants a block, then misbehaves, is banned: when the victim gets that
    block later it must not send it there — least of all by dialling the peer again."""
    track = fleet.tracks["redial"]

    async def want_then_garbage(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        await peer.send(victim_id, Message(wantlist=Wantlist([WantEntry(cid)])))
        await peer.write(victim_id, raw_frame(b"\x1a\xc8\x01" + b"abc"))

    async with cli(victim, "cat", track.cid) as waiting, hostile_peer(want_then_garbage) as hostile:
        await connect(victim, hostile.maddr)
        await penalised_and_gone(victim, hostile.peer_id)
        await fetch_after_honest_joins(fleet, victim, waiting, track)
        await trio.sleep(1.5)  # a block to a peer goes out within milliseconds
        served = [str(cid) for cid in hostile.blocks]
        redialled = hostile.peer_id in await swarm_peers(victim)
        assert not served and not redialled, (
            f"the victim sent the banned peer {served} (re-dialled it: {redialled}); "
            "node/bitswap.py keeps a penalised peer's wantlist and block_arrived() sends "
            "to it, host.new_stream() dialling it again"
        )


# --- 5. wantlist floods ---------------------------------------------------------------


async def test_wantlist_over_the_limit_is_refused(fleet: Fleet, victim: DaemonProcess):
    async with hostile_peer() as hostile:
        await connect(victim, hostile.maddr)
        victim_id = ID.from_base58(victim.peer_id)
        # Unprompted, right after the connection: 8193 want-blocks in one message.
        await hostile.write(victim_id, wantlist_frame(MAX_WANTLIST_ENTRIES + 1))
        entry = await penalised_and_gone(victim, hostile.peer_id)
        assert entry["Strikes"] == 1
        assert f"has more than {MAX_WANTLIST_ENTRIES} entries" in entry["Reason"], entry
        assert await objects(victim) == 0


def _rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_wantlist_flood_leaves_honest_cat_fast_and_memory_bounded(
    fleet: Fleet, victim: DaemonProcess
):
    """Legal wantlists of 8192 want-blocks each, back to back, for blocks nobody has.

    The flooder otherwise behaves (it says DONT_HAVE to the victim's own wants), so
    this measures the flood alone: an honest `chorus cat` meanwhile stays within
    CAT_BOUND, and the victim's memory does not grow with every message: boxo keeps at
    most 1024 wants per peer (protocol/bitswap.py asks the node to truncate likewise).
    """
    await connect(victim, fleet.honest.addr)
    baseline = await timed_cat(victim, fleet.tracks["baseline"])
    rounds = 4

    async with hostile_peer(has_nothing=True) as hostile:
        await connect(victim, hostile.maddr)
        victim_id = ID.from_base58(victim.peer_id)
        warm_up = make_cid(os.urandom(16))
        frame = wantlist_frame(MAX_WANTLIST_ENTRIES - 1, warm_up)
        await hostile.write(victim_id, frame, stream="flood")
        await hostile.dont_have(warm_up)
        rss_before = _rss_mib(victim)
        started = trio.current_time()

        cut_off: list[str] = []

        async def flood() -> None:
            # On a stream of its own, so that its DONT_HAVEs to the victim's wants do
            # not queue behind the flood. Two messages in flight: the victim reads a
            # stream one message at a time, and py-libp2p's yamux resets a stream
            # whose window stays shut for 5 s. If the victim (or its muxer) drops the
            # flooder's connection meanwhile, that is a defence, not a failure: the
            # flood ends there and the honest cat is still measured.
            markers = [make_cid(os.urandom(16)) for _ in range(rounds)]
            try:
                for i, marker in enumerate(markers):
                    if i >= 2:
                        await hostile.dont_have(markers[i - 2], timeout=30)
                    frame = wantlist_frame(MAX_WANTLIST_ENTRIES - 1, marker)
                    await hostile.write(victim_id, frame, stream="flood")
                await hostile.dont_have(markers[-1], timeout=30)
            except SwarmException as exc:
                cut_off.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.sleep(0.5)  # the flood is under way
            during = await timed_cat(victim, fleet.tracks["during-flood"])
        flood_seconds = trio.current_time() - started
        rss_after = _rss_mib(victim)

    grown = rss_after - rss_before
    print(
        f"\n  honest cat of {TRACK_SIZE} bytes: {baseline:.2f}s alone, {during:.2f}s during a "
        f"flood of {rounds} x {MAX_WANTLIST_ENTRIES} want-blocks, which the victim took "
        f"{flood_seconds:.1f}s to process ({flood_seconds / rounds:.2f}s a message); "
        f"victim RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
        + (f"; the flooder was cut off: {cut_off[0]}" if cut_off else "")
    )
    assert during < CAT_BOUND, f"cat took {during:.2f}s under a wantlist flood"
    assert grown < 16, (
        f"the victim's RSS grew {grown:.0f} MiB for {rounds * MAX_WANTLIST_ENTRIES} wants "
        "from one peer: node/bitswap.py _on_wantlist() keeps every entry in peer_wants, "
        "without a per-peer cap"
    )


async def test_withholding_peer_does_not_stall_honest_fetches(fleet: Fleet, victim: DaemonProcess):
    """A peer that says HAVE to everything and never sends a block (a flooder need not
    answer either) must not hold an honest fetch hostage."""
    track = fleet.tracks["withheld"]
    await connect(victim, fleet.honest.addr)
    async with hostile_peer() as hostile:  # no answer: it withholds
        await connect(victim, hostile.maddr)
        seconds = await timed_cat(victim, track)
        print(
            f"\n  cat with a withholding peer connected: {seconds:.2f}s; "
            f"it was asked for {len(hostile.asked)} of {track.blocks} blocks"
        )
        assert seconds < CAT_BOUND, (
            f"cat took {seconds:.2f}s: node/bitswap.py _dispatch() gave {len(hostile.asked)} "
            "want-blocks to a peer that never delivers, each waited REQUEST_TIMEOUT (8 s)"
        )
