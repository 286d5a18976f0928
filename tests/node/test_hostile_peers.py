"""Hostile Bitswap peers against a real `chorus daemon` (DESIGN.md: Network, Bad input).

Each hostile peer is a real py-libp2p host in this test process (trio, TCP, Noise,
Yamux) speaking Bitswap 1.2.0/1.1.0. The daemon under test (the "victim") dials it
with `swarm connect`, then a `cat`/`get` on the victim for a track the victim lacks
makes its engine ask the hostile peer: want-have (answered HAVE, to look like a good
provider) and then want-block, which the hostile peer answers on its own outbound
stream, as Bitswap peers do, with one kind of bad answer per test.

An honest daemon holds the tracks. Where a test says so the victim is connected to it
from the start; otherwise it is connected only after the hostile peer was dealt with,
and the fetch that was waiting all along must then complete with the right bytes:
the victim kept serving, and nothing the hostile peer sent was kept.

Daemons start in parallel once per module (one fresh victim per test) to keep the
module well under a minute on two cores.
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
TRACKS = ("mismatch", "malformed", "oversize", "unsolicited", "baseline", "during-flood")
VICTIMS = 5
WAIT = 20.0


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
        else:  # more tests than spares (or a spare failed to start): start one now
            daemon = DaemonProcess(self.tmp / f"extra{len(self.started)}", dht=False).start()
        self.started.append(daemon)
        return daemon


def _start(path: Path) -> DaemonProcess:
    return DaemonProcess(path, dht=False).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("hostile")
    pool = ThreadPoolExecutor(max_workers=VICTIMS + 1)
    honest_future = pool.submit(_start, tmp / "honest")
    victims = [pool.submit(_start, tmp / f"victim{i}") for i in range(VICTIMS)]
    fleet: Fleet | None = None
    try:
        honest = honest_future.result()
        tracks: dict[str, Track] = {}
        for name in TRACKS:
            path = tmp / f"{name}.bin"
            data = os.urandom(TRACK_SIZE)
            path.write_bytes(data)
            leaves = -(-len(data) // CHUNK)
            tracks[name] = Track(data, honest.add(path), leaves + 1)
        fleet = Fleet(honest, tracks, victims, tmp)
        yield fleet
    finally:
        everyone = [f.result() for f in victims if f.done() and not f.exception()]
        everyone += fleet.started if fleet is not None else []
        if honest_future.done() and not honest_future.exception():
            everyone.append(honest_future.result())
        for future in victims:
            future.cancel()
        list(pool.map(lambda d: d.stop(), {id(d): d for d in everyone}.values()))
        pool.shutdown(wait=True)
        for future in victims:  # started meanwhile despite the cancel
            if future.done() and not future.cancelled() and not future.exception():
                future.result().stop()


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


async def penalty(daemon: DaemonProcess, peer: str) -> dict[str, Any] | None:
    return (await api(daemon, "bitswap/stat"))["Penalised"].get(peer)


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT
) -> Any:
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
    report = json.loads(result.stdout)
    assert report == {"Checked": blocks, "Corrupt": [], "Ok": True}


class Cli:
    """A `chorus` command running against a daemon while the test's trio loop runs on."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--data", str(daemon.data), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout = b""
        self.stderr = b""
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
        self.stdout, self.stderr = out, err
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


class HostilePeer:
    """A py-libp2p host that answers the first want-block it gets with `answer`.

    Want-haves get an honest-looking HAVE, so the victim picks it as a provider.
    Everything it sends goes on its own outbound stream to the victim; errors are
    kept in `errors` (an exception escaping a stream handler would end the host).
    """

    def __init__(self, answer: Answer | None = None) -> None:
        self.host = new_host(
            key_pair=create_new_key_pair(),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        self.answer = answer
        self.asked: list[CID] = []
        self.answered = trio.Event()
        self.written = 0
        self.write_error: BaseException | None = None
        self.errors: list[BaseException] = []
        self._out: dict[ID, INetStream] = {}

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    @property
    def maddr(self) -> str:
        return str(self.host.get_addrs()[0])  # /ip4/127.0.0.1/tcp/N/p2p/<id>

    async def write(self, peer: ID, data: bytes) -> None:
        stream = self._out.get(peer)
        if stream is None:
            stream = self._out[peer] = await self.host.new_stream(
                peer, [TProtocol(PROTOCOL_1_2_0)]
            )
        await stream.write(data)
        self.written += len(data)

    async def send(self, peer: ID, message: Message) -> None:
        await self.write(peer, encode_frame(encode_message(message, PROTOCOL_1_2_0)))

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
        for entry in message.wantlist.entries:
            if entry.cancel:
                continue
            if entry.want_type == WantType.HAVE:
                await self.send(peer, Message(presences=[BlockPresence(entry.cid, PresenceType.HAVE)]))
                continue
            self.asked.append(entry.cid)
            if self.answer is not None and not self.answered.is_set():
                try:
                    await self.answer(self, peer, entry.cid)
                except Exception as exc:  # noqa: BLE001 - the victim hung up on us
                    self.write_error = exc
                finally:
                    self.answered.set()


@asynccontextmanager
async def hostile_peer(answer: Answer | None = None) -> AsyncIterator[HostilePeer]:
    """A running hostile peer on 127.0.0.1; its host is always closed.

    A failure in the body is re-raised once the host is closed, unwrapped from the
    exception group host.run()'s nursery would put it in.
    """
    peer = HostilePeer(answer)
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def fetch_after_honest_joins(
    fleet: Fleet, victim: DaemonProcess, waiting: Cli, track: Track, blocks_before: int = 0
) -> None:
    """Connect the honest daemon: the fetch that waited all along completes, right."""
    await connect(victim, fleet.honest.addr)
    out = await waiting.result(timeout=40)
    assert sha(out) == sha(track.data)
    print(f"  waiting fetch completed {waiting.seconds:.2f}s after it started")
    assert await objects(victim) == blocks_before + track.blocks


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
        print(f"  get with a lying peer connected: {get.seconds:.2f}s")
        assert out.read_bytes() == track.data
        assert hostile.asked, "the victim never asked the hostile peer for a block"
        assert hostile.answered.is_set() and forged

        entry = await penalised_and_gone(victim, hostile.peer_id)
        assert entry["Strikes"] == 1
        # The payload's CID is rebuilt from the bytes, so the lie arrives as a block
        # nobody asked the peer for: the reason names that block.
        assert str(forged[0]) in entry["Reason"], entry
        assert "not asked for" in entry["Reason"], entry
        ledger = (await api(victim, "bitswap/stat"))["Ledgers"][hostile.peer_id]
        assert ledger["BlocksReceived"] == 0 and ledger["DataReceived"] == 0
        assert ledger["Unsolicited"] == 1
        honest_ledger = (await api(victim, "bitswap/stat"))["Ledgers"][fleet.honest.peer_id]
        assert honest_ledger["BlocksReceived"] == track.blocks

        # Exactly the track's blocks were stored, all of them verify: the forged
        # block is not among them.
        assert await objects(victim) == track.blocks
        await repo_is_clean(victim, track.blocks)


# --- 2. malformed protobuf; a frame declaring more than 4 MiB -----------------------


async def test_malformed_frame_then_oversize_frame(fleet: Fleet, victim: DaemonProcess):
    track = fleet.tracks["malformed"]

    async def malformed(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        # Message.payload (field 3) claims 200 bytes; the message has 3 left.
        await peer.write(victim_id, raw_frame(b"\x1a\xc8\x01" + b"abc"))

    declared = 64 * 1024 * 1024

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
            assert "malformed bitswap message" in entry["Reason"], entry
            assert "claims 200 bytes" in entry["Reason"], entry
            assert await objects(victim) == 0

        async with hostile_peer(too_long) as second:
            await connect(victim, second.maddr)  # the waiting fetch asks it next
            entry = await penalised_and_gone(victim, second.peer_id)
            with trio.fail_after(WAIT):
                await second.answered.wait()
            assert entry["Strikes"] == 1
            assert f"declares {declared} bytes" in entry["Reason"], entry
            assert f"limit is {MAX_MESSAGE_SIZE}" in entry["Reason"], entry
            print(f"  hostile peer got {second.written} of {declared} declared bytes out")
            assert second.write_error is not None, "the victim never hung up"
            assert second.written < 8 * 1024 * 1024
            assert await objects(victim) == 0

        await fetch_after_honest_joins(fleet, victim, waiting, track)
    await repo_is_clean(victim, track.blocks)


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
    await repo_is_clean(victim, track.blocks)


# --- 4. a flood of blocks nobody asked for --------------------------------------------


async def test_unsolicited_block_flood(fleet: Fleet, victim: DaemonProcess):
    track = fleet.tracks["unsolicited"]
    flood = [os.urandom(1024) + bytes([i]) for i in range(200)]

    async def unsolicited(peer: HostilePeer, victim_id: ID, cid: CID) -> None:
        # Not the wanted block: 200 valid blocks, one message each, as fast as we can.
        for data in flood:
            await peer.send(victim_id, Message(blocks=[(make_cid(data), data)]))

    async with cli(victim, "cat", track.cid) as waiting:
        async with hostile_peer(unsolicited) as hostile:
            await connect(victim, hostile.maddr)
            entry = await penalised_and_gone(victim, hostile.peer_id)
            with trio.fail_after(WAIT):
                await hostile.answered.wait()
            print(f"  flooder wrote {hostile.written} bytes; stopped by {hostile.write_error!r}")
            assert entry["Strikes"] == 1, "penalised more than once: it read on after the first"
            assert str(make_cid(flood[0])) in entry["Reason"], entry
            assert "not asked for" in entry["Reason"], entry
            ledger = (await api(victim, "bitswap/stat"))["Ledgers"][hostile.peer_id]
            assert ledger["Unsolicited"] == 1
            assert ledger["BlocksReceived"] == 0
            assert await objects(victim) == 0
        await fetch_after_honest_joins(fleet, victim, waiting, track)
    await repo_is_clean(victim, track.blocks)


# --- 5. wantlist floods ---------------------------------------------------------------


def _wantlist_frame(count: int, *, want_type: WantType, send_dont_have: bool) -> bytes:
    entries = tuple(
        WantEntry(make_cid(os.urandom(16)), want_type=want_type, send_dont_have=send_dont_have)
        for _ in range(count)
    )
    body = encode_message(Message(wantlist=Wantlist(entries)), PROTOCOL_1_2_0)
    return encode_frame(body)


def _rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def timed_cat(daemon: DaemonProcess, track: Track) -> float:
    async with cli(daemon, "cat", track.cid) as command:
        out = await command.result(timeout=60)
    assert sha(out) == sha(track.data)
    return command.seconds


async def test_wantlist_over_the_limit_is_refused(fleet: Fleet, victim: DaemonProcess):
    frame = _wantlist_frame(MAX_WANTLIST_ENTRIES + 1, want_type=WantType.BLOCK,
                            send_dont_have=True)
    async with hostile_peer() as hostile:
        await connect(victim, hostile.maddr)
        victim_id = ID.from_base58(victim.peer_id)
        await hostile.write(victim_id, frame)  # unprompted, right after the connection
        entry = await penalised_and_gone(victim, hostile.peer_id)
        assert entry["Strikes"] == 1
        assert f"more than {MAX_WANTLIST_ENTRIES} entries" in entry["Reason"], entry
        assert await objects(victim) == 0


async def test_wantlist_flood_keeps_honest_cat_fast(fleet: Fleet, victim: DaemonProcess):
    """Legal but huge wantlists (8192 want-blocks with sendDontHave, back to back) for
    blocks nobody has: an honest `chorus cat` meanwhile stays within a bound."""
    await connect(victim, fleet.honest.addr)
    baseline = await timed_cat(victim, fleet.tracks["baseline"])
    frames = [
        _wantlist_frame(MAX_WANTLIST_ENTRIES, want_type=WantType.BLOCK, send_dont_have=True)
        for _ in range(4)
    ]
    rss_before = _rss_mib(victim)
    sent = 0
    flood_for = 8.0

    async with hostile_peer() as hostile:
        await connect(victim, hostile.maddr)
        victim_id = ID.from_base58(victim.peer_id)

        async def flood() -> None:
            nonlocal sent
            with trio.move_on_after(flood_for):
                while True:
                    await hostile.write(victim_id, frames[sent % len(frames)])
                    sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.sleep(1.0)  # the flood is under way
            during = await timed_cat(victim, fleet.tracks["during-flood"])
        rss_after = _rss_mib(victim)
        stat = await api(victim, "bitswap/stat")

    print(
        f"\n  honest cat of {TRACK_SIZE} bytes: {baseline:.2f}s alone, {during:.2f}s during "
        f"a flood of {sent} wantlists x {MAX_WANTLIST_ENTRIES} entries ({flood_for:.0f}s); "
        f"victim RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    assert sent >= 2, "the flood never got going"
    assert during < max(10.0, 5 * baseline), f"cat took {during:.2f}s under a wantlist flood"
    assert await objects(victim) == 2 * fleet.tracks["baseline"].blocks
