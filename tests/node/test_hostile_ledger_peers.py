"""Hostile ledger peers against a real co-op (DESIGN.md: Ledger, Network, Bad input).

The co-op is real: a genesis signed by a board, an honest daemon H (board, treasury,
artist, the release's host) and the victim V (the listener's node, which played the
track and so signed a bandwidth receipt), connected to each other. Each hostile peer
is a py-libp2p host in this test process that speaks the real protocols: it joins the
co-op's gossip topic with `node.gossip.Gossip` (and publishes raw bytes through its
Pubsub where a test needs bytes our Gossip would never send), or opens and serves
`/chorus/sync/1.0.0` streams with the codec of ledger/sync.py.

One kind of attack per test. Each checks the refusal (a counter of the victim's
`GET /ledger` or `/metrics`), the penalty where the design gives one (`GET /peers`),
that nothing was stored (log size, heads), and the flood test measures how an honest
write on H reaches V and how an honest 1 MiB `cat` from V performs, alone and during
the attack. Daemons start once per module; each test brings a fresh hostile identity
(a penalised one is shunned). Figures are printed (`-s` shows them).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr
from nacl.signing import SigningKey

from ledger.entry import SignedEntry, sign_entry
from ledger.sync import (
    MAX_FRAME,
    MAX_RANGE,
    MAX_REQUEST_FRAME,
    NEED_DATA,
    Entries,
    FrameReader,
    Heads,
    HeadsRequest,
    RangeRequest,
    RemoteHead,
    SyncError,
    encode_message,
)
from node.gossip import Gossip, encode_batch, ledger_topic
from node.sample_audio import synth_track
from node.sync import MAX_STREAMS_PER_PEER, PROTOCOL
from protocol.varint import encode_uvarint
from tests.daemons import ROOT, DaemonProcess, start_all
from tests.node.test_hostile_peers import eventually

pytestmark = pytest.mark.integration

#: Tree heads only on request, so that the log sizes compared below are exact.
QUIET = ["--tree-head-interval", "0", "--sync-interval", "2"]
WAIT = 30.0
MIB = 1024 * 1024


# --- the co-op -----------------------------------------------------------------------


@dataclass
class Coop:
    honest: DaemonProcess  # H: board, treasury, artist; hosts the release
    victim: DaemonProcess  # V: the listener's node
    coop: str
    topic: str
    receipt: bytes  # the receipt V signed for the bytes H served it
    files: dict[str, tuple[str, bytes]]  # name -> (cid, data): 1 MiB files only V has
    tmp: Path


def _chorus(data: Path, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--data", str(data), *args],
        cwd=ROOT, capture_output=True, timeout=120,
    )
    assert result.returncode == 0, f"chorus {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout


def _size(node: DaemonProcess) -> int:
    return node.chorus_api("GET", "/ledger")["size"]


def _wait(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def coop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coop]:
    tmp = tmp_path_factory.mktemp("hostile-ledger")
    honest = DaemonProcess(tmp / "h", dht=False, extra=QUIET)
    for name in ("board", "till", "artist"):
        honest.cli("key", "new", name)
    genesis = tmp / "coop.genesis"
    created = honest.cli_json(
        "coop", "create", "--name", "Hostile", "--board", "board", "--treasury", "till",
        "--param", "count_after_ms=2000", "-o", str(genesis), "--json",
    )
    _chorus(tmp / "v", "init", "--coop", str(genesis))
    victim = DaemonProcess(tmp / "v", dht=False, extra=QUIET)
    listener = victim.cli_json("key", "new", "listener", "--json")["public_key"]
    album = tmp / "album"
    album.mkdir()
    (album / "01 Short.wav").write_bytes(synth_track("short", 3.0))
    files = {}
    for name in ("baseline", "during"):
        data = os.urandom(MIB)
        (tmp / name).write_bytes(data)
        files[name] = data
    nodes = [honest, victim]
    try:
        start_all(nodes)
        victim.connect(honest)
        honest.cli("member", "admit", "artist", "--class", "artist", "--as", "board")
        honest.cli("member", "admit", listener, "--class", "listener", "--as", "board")
        honest.cli("wallet", "topup", listener, "100000", "--as", "till")
        release = honest.cli_json("release", "publish", str(album), "--title", "Short",
                                  "--as", "artist", "--json")
        _wait(lambda: _size(victim) >= 4, "the release and top-up to reach V")
        play = victim.cli_json("play", release["tracks"][0]["cid"], "--as", "listener", "--json")
        assert play["outcome"] == "paid" and play["receipts"], play
        log = victim.chorus_api("GET", "/ledger/log?start=0&limit=1000")["entries"]
        receipts = [e for e in log if e["kind"] == "receipt"]
        assert receipts, [e["kind"] for e in log]
        receipt = base64.b64decode(receipts[0]["data"])
        stored = {name: (victim.add(tmp / name), data) for name, data in files.items()}
        _wait(lambda: _size(honest) == _size(victim), "H and V to hold the same entries")
        yield Coop(honest, victim, created["id"], ledger_topic(created["id"]), receipt,
                   stored, tmp)
    finally:
        for node in nodes:
            node.stop()


# --- looking at the victim -----------------------------------------------------------


async def status(node: DaemonProcess) -> dict[str, Any]:
    return await trio.to_thread.run_sync(node.chorus_api, "GET", "/ledger")


async def heads(node: DaemonProcess) -> dict[str, Any]:
    feeds = (await trio.to_thread.run_sync(node.chorus_api, "GET", "/ledger/heads"))["feeds"]
    return {f["author"]: (f["seq"], f["head"], f["frozen_after"]) for f in feeds}


async def penalty(node: DaemonProcess, peer: str) -> dict[str, Any] | None:
    peers = await trio.to_thread.run_sync(node.chorus_api, "GET", "/peers")
    for entry in peers["peers"] if isinstance(peers, dict) else peers:
        if entry["peer_id"] == peer:
            return entry["penalty"]
    return None


async def connected(node: DaemonProcess, peer: str) -> bool:
    peers = await trio.to_thread.run_sync(node.chorus_api, "GET", "/peers")
    for entry in peers["peers"] if isinstance(peers, dict) else peers:
        if entry["peer_id"] == peer:
            return entry["connected"]
    return False


async def gossip_counters(node: DaemonProcess) -> dict[str, int]:
    def fetch() -> str:
        with urllib.request.urlopen(f"{node.api}/metrics", timeout=30) as response:
            return response.read().decode()

    out = {}
    for line in (await trio.to_thread.run_sync(fetch)).splitlines():
        if line.startswith("chorus_gossip_") and line.split()[0].endswith("_total"):
            name, value = line.split()
            out[name[len("chorus_gossip_") : -len("_total")]] = int(float(value))
    return out


def rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- entries a hostile peer signs ----------------------------------------------------


def fake_prev() -> bytes:
    """An entry id nobody signed (the prev of an entry far ahead of its feed)."""
    return bytes([0x01, 0x55, 0x12, 0x20]) + os.urandom(32)


def now_ms() -> int:
    return int(time.time() * 1000)


def note(key: SigningKey, seq: int = 1, prev: bytes | None = None, text: str = "hi") -> SignedEntry:
    return sign_entry(key, seq, prev, now_ms(), "note", {"text": text})


def forged(entry: SignedEntry) -> bytes:
    """`entry`'s bytes with one bit of its signature flipped (still canonical)."""
    data = bytearray(entry.encoded)
    at = data.rindex(entry.sig)
    data[at] ^= 1
    return bytes(data)


def non_canonical(entry: SignedEntry) -> bytes:
    """The same map with its keys in reverse order: valid msgpack, other bytes."""
    value = msgpack.unpackb(entry.encoded, raw=False)
    return msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)


# --- the hostile peer ----------------------------------------------------------------


class HostilePeer:
    """A py-libp2p host on 127.0.0.1 with the co-op's gossip topic joined (validator
    accepts everything) and, optionally, a `/chorus/sync/1.0.0` handler of its own."""

    def __init__(self, topic: str) -> None:
        self.host = new_host(
            key_pair=create_new_key_pair(),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(
                max_connections_per_peer=1, min_connections=0, low_watermark=0
            ),
        )
        self.gossip = Gossip(self.host, topic)
        self.topic = topic

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    async def join(self, daemon: DaemonProcess) -> ID:
        """Dial `daemon` and wait until it is in our mesh for the topic."""
        info = info_from_p2p_addr(Multiaddr(daemon.addr))
        await self.host.connect(info)
        await self.gossip.wait_for_peer(info.peer_id, timeout=15)
        return info.peer_id

    async def publish_raw(self, data: bytes) -> None:
        await self.gossip.pubsub.publish(self.topic, data)

    async def publish_batch(self, items: list[bytes]) -> None:
        await self.publish_raw(encode_batch(items))


@asynccontextmanager
async def hostile_peer(
    topic: str, sync_handler: Callable[[INetStream], Awaitable[None]] | None = None
) -> AsyncIterator[HostilePeer]:
    """A running hostile peer; its host is closed however the body ends (a failure is
    re-raised unwrapped, not inside host.run()'s exception groups)."""
    peer = HostilePeer(topic)
    failure: Exception | None = None
    try:
        async with peer.host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            if sync_handler is not None:
                peer.host.set_stream_handler(PROTOCOL, sync_handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(peer.gossip.run)
                try:
                    yield peer
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                    failure = exc
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await peer.host.close()
    if failure is not None:
        raise failure


async def penalised(daemon: DaemonProcess, peer: str) -> dict[str, Any]:
    return await eventually(lambda: penalty(daemon, peer), f"a penalty for {peer}")


# --- gossip: bytes that are not ledger entries, one kind per test ----------------------


def _bad_gossip(kind: str) -> tuple[bytes, str]:
    """One gossip message of `kind` and the gossip counter that must count it."""
    key = SigningKey.generate()
    if kind == "not msgpack":
        return b"\xc1\x00 not msgpack at all", "dropped_malformed"
    if kind == "non-canonical envelope":  # the same batch, keys in the wrong order
        good = note(key).encoded
        return msgpack.packb({"v": 1, "items": [good]}, use_bin_type=True), "dropped_malformed"
    if kind == "oversize message":  # 96 KiB: over the co-op's 64 KiB, under py-libp2p's 1 MiB
        return encode_batch([os.urandom(96 * 1024)]), "dropped_oversize"
    if kind == "malformed entry":
        return encode_batch([b"\x87" + os.urandom(40)]), "dropped_invalid"
    if kind == "non-canonical entry":
        return encode_batch([non_canonical(note(key))]), "dropped_invalid"
    if kind == "forged signature":  # a good entry first: the whole batch must go
        return encode_batch([note(SigningKey.generate()).encoded, forged(note(key))]), \
            "dropped_invalid"
    if kind == "bad CID in a release":
        cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        body = {
            "title": "Not as Kubo spells it",
            "tracks": [{"cid": cid.upper(), "title": "t", "duration_ms": 1000, "size": 10,
                        "mime": "audio/wav"}],
            "payees": [{"key": bytes(key.verify_key), "bps": 10000}],
        }
        entry = sign_entry(key, 1, None, now_ms(), "release", body)
        return encode_batch([entry.encoded]), "dropped_invalid"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "not msgpack",
        "non-canonical envelope",
        "oversize message",
        "malformed entry",
        "non-canonical entry",
        "forged signature",
        "bad CID in a release",
    ],
)
async def test_bad_gossip_is_dropped_and_its_sender_penalised(coop: Coop, kind: str) -> None:
    victim = coop.victim
    message, counter = _bad_gossip(kind)
    before, size, feeds = await gossip_counters(victim), _size(victim), await heads(victim)
    async with hostile_peer(coop.topic) as hostile:
        await hostile.join(victim)
        await hostile.publish_raw(message)
        entry = await penalised(victim, hostile.peer_id)
        after = await gossip_counters(victim)
        assert after[counter] == before[counter] + 1, (kind, counter, before, after)
        assert entry["banned"] and entry["strikes"] == 1, entry
        # Banned from now on: even a valid entry from it is dropped unread, unpunished.
        await hostile.publish_batch([note(SigningKey.generate()).encoded])
        await eventually(
            lambda: _more(gossip_counters(victim), "dropped_refused", after["dropped_refused"]),
            "the penalised peer's next batch to be dropped unread",
        )
    assert _size(victim) == size and await heads(victim) == feeds
    assert (await gossip_counters(victim))["batches_received"] == before["batches_received"]
    print(f"\n  {kind}: counted in {counter}; penalty {entry['reason']!r}")


async def _more(counters: Awaitable[dict[str, int]], name: str, than: int) -> bool:
    return (await counters)[name] > than


# --- gossip: an honest relay is never blamed for a hostile originator -----------------


async def test_an_honest_relay_is_not_blamed_for_what_a_hostile_originator_sends(
    coop: Coop,
) -> None:
    """The hostile peer talks to H only; V hears it through H. It first publishes
    valid entries faster than the per-originator rate (H forwards what its own bucket
    lets through, which V's bucket, with other timing, may find over the rate), then a
    forged entry (H refuses it and does not forward it). V must blame nobody: H only
    forwards what it accepted."""
    honest, victim = coop.honest, coop.victim
    sent: list[bytes] = []
    before = await gossip_counters(victim)
    async with hostile_peer(coop.topic) as hostile:
        await hostile.join(honest)
        started = trio.current_time()
        for i in range(120):  # 40/s for 3 s: twice the rate, three times the burst
            entry = note(SigningKey.generate(), text=f"fast {i}")
            sent.append(entry.id_bytes)
            await hostile.publish_batch([entry.encoded])
            await trio.sleep_until(started + (i + 1) / 40)
        await hostile.publish_batch([forged(note(SigningKey.generate()))])
        entry = await penalised(honest, hostile.peer_id)
        # H blames the originator, its own neighbour, for its rate; then it is banned.
        assert entry["reason"] == "over the per-originator rate", entry
        await trio.sleep(1.5)  # what H forwarded has reached V by now
    after_h, after_v = await gossip_counters(honest), await gossip_counters(victim)
    forwarded = after_v["received"] - before["received"]
    v_dropped = after_v["dropped_rate"] - before["dropped_rate"]
    print(
        f"\n  120 batches at 40/s: H dropped {after_h['dropped_rate']} over the rate, "
        f"V received {forwarded} through H and dropped {v_dropped} more over the rate"
    )
    assert await penalty(victim, honest.peer_id) is None, (
        "V blamed the honest relay H for a hostile originator's batches"
    )
    assert after_h["dropped_rate"] > 0 and forwarded > 0
    assert after_v["dropped_invalid"] == before["dropped_invalid"]  # the forgery stopped at H
    assert await connected(victim, honest.peer_id)


# --- gossip: replayed receipts --------------------------------------------------------


async def test_a_replayed_receipt_is_stored_once_and_counted_once(coop: Coop) -> None:
    """V's real receipt (for the bytes H served it), re-published 30 times alone and
    10 times wrapped in batches with fresh entries: only the fresh entries are new,
    the tally of hosting bytes is unchanged, and nobody is penalised (a duplicate is
    not invalid: honest gossip repeats items too)."""
    victim = coop.victim
    tally_before = await trio.to_thread.run_sync(victim.chorus_api, "GET", "/tally")
    size, duplicates = _size(victim), (await status(victim))["counters"]["duplicates"]
    fresh = [note(SigningKey.generate(), text=f"wrapper {i}").encoded for i in range(10)]
    async with hostile_peer(coop.topic) as hostile:
        await hostile.join(victim)
        for i in range(40):
            items = [coop.receipt] if i < 30 else [fresh[i - 30], coop.receipt]
            await hostile.publish_batch(items)
            await trio.sleep(0.1)  # 10 batches/s: within the per-originator rate
        async def all_in() -> bool:
            return _size(victim) == size + len(fresh)

        await eventually(all_in, "exactly the ten wrapper entries to be stored")
        counters = (await status(victim))["counters"]
        assert await penalty(victim, hostile.peer_id) is None
    assert counters["duplicates"] - duplicates >= 30, counters
    tally_after = await trio.to_thread.run_sync(victim.chorus_api, "GET", "/tally")
    # Every figure is the same; only the count of entries grew, by the ten wrappers.
    assert tally_after == {**tally_before, "entries": tally_before["entries"] + len(fresh)}
    hosting = json.dumps(tally_after.get("epochs", tally_after), sort_keys=True)[:200]
    print(f"\n  receipt replayed 40 times: stored once; duplicates "
          f"+{counters['duplicates'] - duplicates}; tally unchanged ({hosting}...)")


# --- gossip: an equivocating feed ----------------------------------------------------


async def test_an_equivocating_feed_from_a_hostile_peer_is_frozen(coop: Coop) -> None:
    victim, honest = coop.victim, coop.honest
    liar = SigningKey.generate()
    author = bytes(liar.verify_key).hex()
    first = note(liar, 1, None, "the truth")
    second = note(liar, 2, first.id_bytes, "more")
    other = note(liar, 2, first.id_bytes, "another story")
    later = note(liar, 3, second.id_bytes, "after the fork")
    size, counters = _size(victim), (await status(victim))["counters"]
    async with hostile_peer(coop.topic) as hostile:
        await hostile.join(victim)
        await hostile.publish_batch([first.encoded, second.encoded])
        await trio.sleep(0.3)
        await hostile.publish_batch([other.encoded])

        async def frozen() -> bool:
            mine = (await heads(victim)).get(author)
            return mine is not None and mine[2] == 1 and _size(victim) == size + 3

        await eventually(frozen, "V to hold the fork and freeze the feed after seq 1")
        await trio.sleep(0.3)
        await hostile.publish_batch([later.encoded])

        async def refused_later() -> bool:
            return (await status(victim))["counters"]["frozen"] > counters["frozen"]

        await eventually(refused_later, "seq 3 to be refused as FROZEN")
        assert await penalty(victim, hostile.peer_id) is None  # the author lied, not the peer
    after = (await status(victim))["counters"]
    assert after["forks"] == counters["forks"] + 1
    assert _size(victim) == size + 3  # seq 1, both seq 2s; not seq 3

    async def honest_frozen() -> bool:  # fork evidence spreads from V to H
        mine = (await heads(honest)).get(author)
        return mine is not None and mine[2] == 1

    await eventually(honest_frozen, "H to freeze the feed too")


# --- gossip: a flood of valid-looking entries -----------------------------------------


async def honest_write_latency(coop: Coop, text: str) -> float:
    """Seconds from an honest write on H until V holds it."""
    started = time.monotonic()
    written = await trio.to_thread.run_sync(
        coop.honest.chorus_api, "POST", "/ledger/entries",
        {"key": "self", "kind": "note", "body": {"text": text}},
    )

    def arrived() -> bool:
        try:
            coop.victim.chorus_api("GET", f"/ledger/entries/{written['id']}")
        except urllib.error.HTTPError:
            return False
        return True

    await eventually(lambda: trio.to_thread.run_sync(arrived), f"{text!r} to reach V", 60)
    return time.monotonic() - started


async def honest_cat_latency(coop: Coop, name: str) -> float:
    """Seconds for `chorus cat` on H of a 1 MiB file only V holds."""
    cid, data = coop.files[name]
    started = time.monotonic()
    out = await trio.to_thread.run_sync(
        lambda: coop.honest.cli("cat", cid, timeout=120).stdout
    )
    assert out == data
    return time.monotonic() - started


def _flood_batches(batches: int, per_batch: int) -> list[bytes]:
    """Valid entries far ahead of their feeds (EARLY: never judgeable), from fresh
    keys, and from one key that signs many seqs; one message per batch."""
    hog = SigningKey.generate()
    out = []
    time_ms = now_ms()
    for b in range(batches):
        items = []
        for i in range(per_batch):
            if i % 8 == 0:  # an eighth from one key: over the per-author cap
                key, seq = hog, 1_000_000 + b * per_batch + i
            else:
                key, seq = SigningKey.generate(), 10_000 + i
            items.append(sign_entry(key, seq, fake_prev(), time_ms, "note",
                                    {"text": "x" * 40}).encoded)
        out.append(encode_batch(items))
    return out


async def test_a_flood_of_valid_looking_gossip_keeps_memory_bounded_and_serves_honest_peers(
    coop: Coop,
) -> None:
    victim = coop.victim
    batches = await trio.to_thread.run_sync(_flood_batches, 96, 250)  # 24,000 entries, 60 KB each
    base_write = await honest_write_latency(coop, "baseline")
    base_cat = await honest_cat_latency(coop, "baseline")
    size = _size(victim)
    early_before = (await status(victim))["counters"]["early"]
    rss_before = rss_mib(victim)
    async with hostile_peer(coop.topic) as hostile:
        await hostile.join(victim)
        flood_started = trio.current_time()
        write_during = cat_during = 0.0
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                for i, batch in enumerate(batches):  # 10 batches/s: within the rate
                    await hostile.publish_raw(batch)
                    await trio.sleep_until(flood_started + (i + 1) / 10)

            nursery.start_soon(flood)
            await trio.sleep(1.5)  # the flood is under way
            write_during = await honest_write_latency(coop, "during the flood")
            cat_during = await honest_cat_latency(coop, "during")

        async def absorbed() -> dict[str, Any] | None:
            state = await status(victim)
            return state if state["counters"]["early"] - early_before >= 20_000 else None

        state = await eventually(absorbed, "V to judge the flood", 60)
        flood_seconds = trio.current_time() - flood_started
        assert await penalty(victim, hostile.peer_id) is None  # valid entries: no fault
    rss_after = rss_mib(victim)
    counters = state["counters"]
    print(
        f"\n  flood of {len(batches)} x 250 valid entries far ahead of their feeds at 10 "
        f"batches/s, absorbed in {flood_seconds:.1f}s: early {counters['early']}, pending "
        f"{state['pending']}, dropped from pending {counters['pending_dropped']}; "
        f"V RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
        f"\n  honest write H->V: {base_write:.2f}s alone, {write_during:.2f}s during the flood"
        f"\n  honest 1 MiB cat from V: {base_cat:.2f}s alone, {cat_during:.2f}s during the flood"
    )
    assert state["pending"] <= 20_000
    # 3,000 from one key (its cap is 1,024) and 21,000 others (the cap is 20,000).
    assert counters["pending_dropped"] >= 3_000 - 1_024
    assert _size(victim) == size + 1  # the honest note written during it; nothing of the flood
    assert write_during <= max(5 * base_write, 5.0)
    assert cat_during <= max(5 * base_cat, 5.0)
    assert rss_after - rss_before < 96, "the victim's memory grew with the flood"


# --- sync: requests a hostile requester sends ------------------------------------------


def _raw_frame(value: dict[str, Any]) -> bytes:
    body = msgpack.packb(value, use_bin_type=True)
    return encode_uvarint(len(body)) + body


async def _read_reply(stream: INetStream, reader: FrameReader) -> object:
    with trio.fail_after(WAIT):
        while True:
            message = reader.next_message()
            if message is not NEED_DATA:
                return message
            try:
                data = await stream.read(65536)
            except Exception:  # noqa: BLE001 - reset or closed: the stream has ended
                data = b""
            reader.receive_data(data or b"")


def _requests(kind: str, coop: str) -> tuple[list[bytes], str]:
    """The frames a hostile requester sends (after a good heads request where the
    kind needs one) and the words the victim's refusal must contain."""
    heads = encode_message(HeadsRequest(coop, None, 16))
    author = os.urandom(32)
    if kind == "garbage":
        return [encode_uvarint(5) + b"\xc1\xc1\xc1\xc1\xc1"], "malformed request"
    if kind == "frame over the request limit":  # the body never needs to come
        return [encode_uvarint(MAX_REQUEST_FRAME + 1)], f"limit is {MAX_REQUEST_FRAME}"
    if kind == "frame over MAX_FRAME":
        return [encode_uvarint(MAX_FRAME + 1)], "limit is"
    if kind == "range 0..2**63":
        frame = _raw_frame({"author": author, "first": 0, "last": 2**63 - 1, "t": "get"})
        return [heads, frame], "RangeRequest.first must be an integer in 1.."
    if kind == "range over MAX_RANGE":
        frame = _raw_frame({"author": author, "first": 1, "last": MAX_RANGE + 1, "t": "get"})
        return [heads, frame], f"at most MAX_RANGE ({MAX_RANGE})"
    if kind == "heads limit over a page":
        frame = _raw_frame({"after": None, "coop": coop, "limit": 1 << 20, "t": "heads"})
        return [frame], "HeadsRequest.limit must be an integer in 1..4096"
    if kind == "range before heads":
        return [encode_message(RangeRequest(author, 1, 10))], "range request before a heads"
    if kind == "heads pages again and again":
        return [heads] * 3, "heads request for a page already given"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "frame over the request limit",
        "frame over MAX_FRAME",
        "range 0..2**63",
        "range over MAX_RANGE",
        "heads limit over a page",
        "range before heads",
        "heads pages again and again",
    ],
)
async def test_hostile_sync_requests_are_refused_and_the_requester_cut_off(
    coop: Coop, kind: str
) -> None:
    victim = coop.victim
    frames, words = _requests(kind, coop.coop)
    refused = (await status(victim))["sync"]["refused"]
    size = _size(victim)
    async with hostile_peer(coop.topic) as hostile:
        victim_id = await hostile.join(victim)
        stream = await hostile.host.new_stream(victim_id, [TProtocol(PROTOCOL)])
        reader = FrameReader()
        replies = []
        for frame in frames:
            await stream.write(frame)
            reply = await _read_reply(stream, reader)
            replies.append(reply)
            if isinstance(reply, SyncError):
                break
        refusal = replies[-1]
        assert isinstance(refusal, SyncError), replies
        assert words in refusal.reason, refusal.reason
        assert all(isinstance(r, Heads) for r in replies[:-1]), replies
        entry = await penalised(victim, hostile.peer_id)
        assert entry["reason"].startswith("sync: ") and entry["banned"], entry

        async def gone() -> bool:
            return not await connected(victim, hostile.peer_id)

        await eventually(gone, "the hostile requester to be disconnected")
    assert (await status(victim))["sync"]["refused"] == refused + 1
    assert _size(victim) == size


async def test_a_requester_gets_two_sync_streams_at_a_time(coop: Coop) -> None:
    victim = coop.victim
    busy = (await status(victim))["sync"]["busy"]
    async with hostile_peer(coop.topic) as hostile:
        victim_id = await hostile.join(victim)
        held = [
            await hostile.host.new_stream(victim_id, [TProtocol(PROTOCOL)])
            for _ in range(MAX_STREAMS_PER_PEER)
        ]
        for stream in held:  # each one in use: a heads page asked for and answered
            await stream.write(encode_message(HeadsRequest(coop.coop, None, 1)))
            assert isinstance(await _read_reply(stream, FrameReader()), Heads)
        extra = await hostile.host.new_stream(victim_id, [TProtocol(PROTOCOL)])
        await extra.write(encode_message(HeadsRequest(coop.coop, None, 1)))
        reply = await _read_reply(extra, FrameReader())
        assert isinstance(reply, SyncError) and reply.reason.startswith("busy"), reply
        assert (await status(victim))["sync"]["busy"] == busy + 1
        assert await penalty(victim, hostile.peer_id) is None  # busy is not an offence
        for stream in held:
            await stream.close()


# --- sync: replies that lie, when the victim syncs from the hostile peer --------------


def _lying_feed(kind: str) -> tuple[RemoteHead, list[bytes]]:
    """A feed the hostile peer advertises (seqs 1..3 of a fresh key) and the entries
    it answers the range request with: the three true ones plus one lie."""
    key = SigningKey.generate()
    chain: list[SignedEntry] = []
    for seq in (1, 2, 3):
        chain.append(note(key, seq, chain[-1].id_bytes if chain else None, f"seq {seq}"))
    head = RemoteHead(bytes(key.verify_key), 3, chain[-1].id_bytes, None)
    items = [entry.encoded for entry in chain]
    if kind == "an entry of another author":
        items.insert(1, note(SigningKey.generate()).encoded)
    elif kind == "a seq outside the range":
        items.append(note(key, 4, chain[-1].id_bytes, "seq 4, not asked for").encoded)
    elif kind == "a forged entry":
        items.append(forged(note(key, 4, chain[-1].id_bytes, "forged")))
    else:
        raise AssertionError(kind)
    return head, items


@pytest.mark.parametrize(
    "kind", ["an entry of another author", "a seq outside the range", "a forged entry"]
)
async def test_a_sync_peer_that_lies_is_penalised_and_nothing_it_sent_is_stored(
    coop: Coop, kind: str
) -> None:
    victim = coop.victim
    head, items = _lying_feed(kind)
    asked: list[object] = []

    async def serve(stream: INetStream) -> None:
        reader = FrameReader()
        try:
            while True:
                request = await _read_reply(stream, reader)
                asked.append(request)
                if isinstance(request, HeadsRequest):
                    await stream.write(encode_message(Heads((head,), False)))
                elif isinstance(request, RangeRequest):
                    await stream.write(encode_message(Entries(tuple(items), False)))
                else:
                    return
        except Exception:  # noqa: BLE001 - the victim hung up: the handler's boundary
            return

    hostile_replies = (await status(victim))["sync"]["hostile_replies"]
    size, feeds = _size(victim), await heads(victim)
    async with hostile_peer(coop.topic, serve) as hostile:
        await hostile.join(victim)  # V syncs with every peer that connects
        entry = await penalised(victim, hostile.peer_id)
        assert any(isinstance(r, RangeRequest) for r in asked), asked
        assert entry["reason"].startswith("sync: "), entry
        words = "invalid entry" if kind == "a forged entry" else "for a request of seqs 1..3"
        assert words in entry["reason"], entry

        async def gone() -> bool:
            return not await connected(victim, hostile.peer_id)

        await eventually(gone, "the lying peer to be disconnected")
    assert (await status(victim))["sync"]["hostile_replies"] == hostile_replies + 1
    # The three true entries came in the same reply as the lie: none of them is kept.
    assert _size(victim) == size and await heads(victim) == feeds
    print(f"\n  {kind}: {entry['reason']}")


# --- the pending buffer's caps, in process -----------------------------------------------


async def test_the_pending_buffer_is_capped_per_author_in_total_and_in_bytes(tmp_path) -> None:
    """NodeLedger on a real LedgerStore, with small caps: early entries past a cap are
    dropped and counted (per author the farthest ahead; in total the oldest), and the
    entries still held are judged once their gap closes."""
    from ledger.entry import MAX_ENTRY_SIZE
    from node.ledger import NodeLedger
    from node.ledger_store import LedgerStore

    node_key = SigningKey.generate()
    store = LedgerStore(tmp_path / "ledger.db", owner=bytes(node_key.verify_key))
    ledger = NodeLedger(store, node_key, tree_head_interval=0, max_pending=50,
                        max_pending_per_author=10, max_pending_bytes=200 * 1024)
    hog = SigningKey.generate()
    chain = [note(hog, 1)]
    for seq in range(2, 31):
        chain.append(note(hog, seq, chain[-1].id_bytes, f"seq {seq}"))
    big = "x" * (MAX_ENTRY_SIZE - 1024)
    async with trio.open_nursery() as nursery:
        await nursery.start(ledger.run)
        # Seqs 2..30 of one author, farthest first: the ten nearest stay.
        await ledger.submit(chain[:0:-1])
        assert ledger.pending == 10 and ledger.counters.pending_dropped == 19
        # 60 fresh authors, seq 2 each: the total cap of 50 drops the oldest 20.
        others = [note(SigningKey.generate(), 2, fake_prev()) for _ in range(60)]
        await ledger.submit(others)
        assert ledger.pending == 50 and ledger.counters.pending_dropped == 19 + 20
        # Big entries: the byte cap (200 KiB) holds three of 63 KiB.
        large = [sign_entry(SigningKey.generate(), 2, fake_prev(), now_ms(), "note",
                            {"text": big}) for _ in range(5)]
        await ledger.submit(large)
        assert ledger.pending_bytes <= 200 * 1024
        held = ledger.pending
        # Seq 1 closes the hog's gap: what is still held of it (none: the oldest went)
        # or fetched again is judged in order.
        await ledger.submit(chain[:11])
        assert (await ledger.read(store.head, bytes(hog.verify_key))).seq == 11
        assert ledger.pending <= held
        nursery.cancel_scope.cancel()
    store.close()


# --- an over-rate batch relayed by an honest node, in process ----------------------------


async def test_a_relay_is_not_blamed_for_batches_over_the_originators_rate() -> None:
    """A publishes 12 batches at once; B's bucket lets them all through, C's bucket
    (smaller here, standing for C's other timing) drops some. C must blame nobody: B
    only forwarded what its own bucket accepted. A batch over the rate that comes from
    its originator itself is still blamed on it."""
    from tests.node.test_gossip import TOPIC, collect, line

    blamed: list[tuple[ID, str]] = []
    c_config = {"max_batches_per_origin": 2.0, "on_reject": lambda p, r: blamed.append((p, r))}
    async with line({}, {}, c_config) as (a, b, c):
        for i in range(12):  # a burst above C's bucket of 4, below py-libp2p's queues
            await a.pubsub.publish(TOPIC, encode_batch([b"burst-%d" % i]))
        got = await collect(c, 12, timeout=3)
        assert c.counters.dropped_rate >= 4 and len(got) == 12 - c.counters.dropped_rate
        assert b.counters.received == 12
        assert blamed == [], f"C blamed the relay B for A's rate: {blamed}"
    blamed.clear()
    async with line({}, c_config) as (a, c):
        for i in range(12):
            await a.pubsub.publish(TOPIC, encode_batch([b"burst-%d" % i]))
        await collect(c, 12, timeout=3)
        assert c.counters.dropped_rate >= 4
        assert {peer for peer, _ in blamed} == {a.peer_id}
