"""Bitswap interop between a real `chorus daemon` and a real Helia node (JS), both ways.

(a) Helia fetches files a chorus daemon added (kubo-v0 and v1-raw, multi-block).
(b) The daemon fetches files Helia added, and its ledger credits Helia's peer ID.
(c) Helia asks the daemon for a block it does not have: Helia's cat gives up cleanly,
    the daemon keeps serving, and the next fetch over the same connection works.
(d) Both ways again after more than 10 s of silence, when Helia has reset the idle
    stream the daemon sends on (@helia/bitswap's DEFAULT_MESSAGE_RECEIVE_TIMEOUT).

Helia (tests/helia/peer.mjs) is an independent Bitswap 1.2.0 implementation; content
is ``tests.vectors.content.deterministic_bytes``, generated on both sides. One daemon
serves the whole module; each test has a Helia of its own (a new peer ID, so a ledger
entry of its own, and a connection in the direction the test wants).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import DaemonProcess
from tests.helia_peer import HeliaError, HeliaPeer
from tests.vectors.content import deterministic_bytes

pytestmark = [pytest.mark.helia, pytest.mark.integration]

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path_factory.mktemp("chorus") / "node").start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def helia(node: DaemonProcess) -> Iterator[HeliaPeer]:
    # needs the daemon fixture, so is stopped before it
    with HeliaPeer() as peer:
        yield peer


def daemon_diagnostics(node: DaemonProcess, helia: HeliaPeer) -> str:
    return (
        "\n--- daemon log ---\n"
        + "\n".join(node.log[-40:])
        + "\n--- helia stderr ---\n"
        + helia.stderr_tail()
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- (a) Helia fetches from chorus ------------------------------------------------------------


def test_helia_fetches_files_chorus_added(node, helia, tmp_path):
    big = deterministic_bytes(3 * MIB + 17, "chorus-to-helia")
    raw = deterministic_bytes(MIB + 5, "chorus-to-helia-raw")
    cid_v0 = node.add(write(tmp_path / "big.bin", big))
    cid_raw = node.add(write(tmp_path / "raw.bin", raw), "--cid-version", "1")
    assert cid_v0.startswith("Qm") and cid_raw.startswith("bafy")
    # Helia starts with neither: every block it reads must come from the daemon
    assert not helia.has(cid_v0) and not helia.has(cid_raw)

    conn = helia.connect(node.addr)
    assert conn["peer"] == node.peer_id
    assert conn["muxer"] == "/yamux/1.0.0"

    started = time.monotonic()
    try:
        got = helia.cat(cid_v0, timeout_ms=30_000)
    except HeliaError as exc:
        raise AssertionError(f"{exc}{daemon_diagnostics(node, helia)}") from None
    elapsed = time.monotonic() - started
    assert got == (sha256(big), len(big))
    assert helia.cat(cid_raw, timeout_ms=30_000) == (sha256(raw), len(raw))
    assert helia.has(cid_v0) and helia.has(cid_raw)

    stat = node.bitswap_stat()
    ledger = stat["Ledgers"][helia.peer_id]
    # 13 + 1 blocks of 3 MiB + 17 (v0 leaves carry a few bytes of dag-pb framing),
    # 5 + 1 of the raw file
    assert ledger["BlocksSent"] == 14 + 6
    assert ledger["DataSent"] >= len(big) + len(raw)
    assert ledger["Unsolicited"] == 0
    assert not stat["Penalised"]
    print(f"chorus->Helia: 3 MiB in {elapsed:.2f} s")


# -- (b) chorus fetches from Helia ------------------------------------------------------------


def test_chorus_fetches_files_helia_added(node, helia, tmp_path):
    # 10 MiB: chorus keeps 24 want-blocks in flight, so Helia's answer (~6 MiB) is more
    # than one message and Helia splits it at its (and the spec's) 4 MiB limit
    size_v0, size_raw = 10 * MIB + 17, MIB + 5
    cid_v0 = helia.add(size=size_v0, seed="helia-to-chorus")
    cid_raw = helia.add(size=size_raw, seed="helia-to-chorus-raw", profile="v1-raw")
    assert cid_v0.startswith("Qm") and cid_raw.startswith("bafy")

    node.cli("swarm", "connect", helia.multiaddr)
    assert helia.peer_id in node.cli("swarm", "peers").stdout.decode()

    out_v0, out_raw = tmp_path / "v0.bin", tmp_path / "raw.bin"
    started = time.monotonic()
    result = node.cli("get", cid_v0, "-o", str(out_v0), check=False, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode() + daemon_diagnostics(node, helia)
    assert out_v0.read_bytes() == deterministic_bytes(size_v0, "helia-to-chorus")
    assert node.cli("cat", cid_raw, timeout=60).stdout == deterministic_bytes(
        size_raw, "helia-to-chorus-raw"
    )
    node.cli("get", cid_raw, "-o", str(out_raw), timeout=60)
    assert out_raw.read_bytes() == deterministic_bytes(size_raw, "helia-to-chorus-raw")

    stat = node.bitswap_stat()
    ledger = stat["Ledgers"][helia.peer_id]
    # each block once: the raw file's root (< 1 KiB), which Helia sends in answer to
    # chorus's want-have instead of a HAVE, is kept, not asked for again
    assert ledger["BlocksReceived"] == 42 + 6
    assert ledger["DataReceived"] >= size_v0 + size_raw
    assert ledger["BlocksSent"] == 0
    assert ledger["Unsolicited"] == 0
    assert not stat["Penalised"]
    print(f"Helia->chorus: 10 MiB in {elapsed:.2f} s")


# -- (c) a block chorus does not have ----------------------------------------------------------


def test_helia_asking_for_a_missing_block_gives_up_and_chorus_keeps_serving(node, helia, tmp_path):
    good = deterministic_bytes(MIB, "after-the-miss")
    good_cid = node.add(write(tmp_path / "good.bin", good))
    # a CID of bytes nobody stores: `add --only-hash` computes it without keeping it
    missing = (
        node.cli(
            "add",
            "-Q",
            "-n",
            "--cid-version",
            "1",
            str(write(tmp_path / "ghost.bin", b"no peer has this block %f" % time.time())),
        )
        .stdout.decode()
        .strip()
    )
    helia.connect(node.addr)

    started = time.monotonic()
    with pytest.raises(HeliaError, match=r"(?i)abort|timeout|timed out"):
        helia.cat(missing, timeout_ms=2_000)
    waited = time.monotonic() - started
    assert waited < 2.0 + 5.0, f"Helia took {waited:.1f} s to give up"

    assert node.proc is not None and node.proc.poll() is None, "the daemon died"
    assert helia.peer_id in node.bitswap_stat()["Peers"]
    assert node.peer_id in helia.peers()
    try:
        assert helia.cat(good_cid, timeout_ms=20_000) == (sha256(good), len(good))
    except HeliaError as exc:
        raise AssertionError(f"{exc}{daemon_diagnostics(node, helia)}") from None
    stat = node.bitswap_stat()
    assert not stat["Penalised"]
    assert stat["Ledgers"][helia.peer_id]["BlocksSent"] == 5
    assert not any("Traceback" in line for line in node.log), "\n".join(node.log)


# -- (d) after Helia has reset the idle stream -------------------------------------------------


def test_both_ways_after_helias_idle_stream_timeout(node, helia, tmp_path):
    files = [deterministic_bytes(300_000, f"idle-{i}") for i in range(2)]
    cids = [node.add(write(tmp_path / f"idle{i}.bin", data)) for i, data in enumerate(files)]
    helia_cids = [helia.add(size=300_000, seed=f"helia-idle-{i}") for i in range(2)]
    helia.connect(node.addr)
    # the daemon now has a stream open to Helia, for blocks and for its wantlist
    assert helia.cat(cids[0], timeout_ms=10_000) == (sha256(files[0]), len(files[0]))
    assert node.cli("cat", helia_cids[0], timeout=30).stdout == deterministic_bytes(
        300_000, "helia-idle-0"
    )

    time.sleep(10.5)  # Helia aborts an inbound Bitswap stream silent for 10 s

    started = time.monotonic()
    try:
        got = helia.cat(cids[1], timeout_ms=5_000)
    except HeliaError as exc:
        raise AssertionError(f"{exc}{daemon_diagnostics(node, helia)}") from None
    assert got == (sha256(files[1]), len(files[1]))
    helia_s = time.monotonic() - started
    started = time.monotonic()
    assert node.cli("cat", helia_cids[1], timeout=30).stdout == deterministic_bytes(
        300_000, "helia-idle-1"
    )
    chorus_s = time.monotonic() - started
    # a lost message would cost chorus its 8 s request timeout
    assert chorus_s < 5, f"chorus took {chorus_s:.1f} s to fetch 2 blocks from Helia"
    print(f"after 10.5 s idle: Helia fetched in {helia_s:.2f} s, chorus in {chorus_s:.2f} s")
