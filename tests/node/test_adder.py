"""Adding from disk into a real repo: every reference case round-trips, and the
add is all-or-nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from node.adder import add_paths, add_stream
from node.errors import QuotaExceeded
from node.repo import Repo
from protocol.cid import cid_to_text
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW
from protocol.reader import read_file, stat_node
from tests.vectors.content import deterministic_chunks

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "unixfs.json").read_text())
PROFILES = {"kubo-v0": KUBO_DEFAULT, "v1-raw": KUBO_V1_RAW}


class ChunkStream(io.RawIOBase):
    """A readable stream over deterministic content, never all in memory."""

    def __init__(self, size: int, seed: str) -> None:
        self._chunks = deterministic_chunks(size, seed)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while len(self._buffer) < n and (piece := next(self._chunks, None)) is not None:
            self._buffer += piece
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    with Repo.init(tmp_path_factory.mktemp("adder") / "repo") as repo:
        yield repo


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize(
    "case", [c for c in VECTORS["files"] if "seed" in c], ids=lambda c: c["name"]
)
def test_every_reference_file_round_trips_through_the_store(repo, case, profile):
    entry = add_stream(ChunkStream(case["size"], case["seed"]), repo.blockstore, PROFILES[profile])
    assert cid_to_text(entry.cid) == case["cids"][profile]
    expected = hashlib.sha256()
    for piece in deterministic_chunks(case["size"], case["seed"]):
        expected.update(piece)
    got = hashlib.sha256()
    for piece in read_file(entry.cid, repo.blockstore.get):
        got.update(piece)
    assert got.hexdigest() == expected.hexdigest()
    assert stat_node(entry.cid, repo.blockstore.get).size == case["size"]
    assert entry.cid in {pin.cid for pin in repo.blockstore.pin_ls("recursive")}


def test_symlinks_are_stored_not_followed(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "real.txt").write_bytes(b"real")
    os.symlink("real.txt", tmp_path / "dir" / "link")
    result = add_paths([tmp_path / "dir"], None, recursive=True)
    names = {item.name: item for item in result.added}
    assert set(names) == {"dir", "dir/real.txt", "dir/link"}
    assert names["dir/link"].cid != names["dir/real.txt"].cid


def test_quota_failure_mid_add_stores_and_pins_nothing(tmp_path):
    with Repo.init(tmp_path / "small", quota=1_000_000) as small:
        with pytest.raises(QuotaExceeded):
            add_stream(ChunkStream(20_000_000, "quota"), small.blockstore)
        assert small.blockstore.stat().blocks == 0
        assert small.blockstore.pin_ls() == []
        # The store still works afterwards.
        entry = add_stream(io.BytesIO(b"small enough"), small.blockstore)
        assert b"".join(read_file(entry.cid, small.blockstore.get)) == b"small enough"


def test_several_paths_are_all_pinned(repo, tmp_path):
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(b"a" * 300_000)
    b.write_bytes(b"b" * 10)
    result = add_paths([a, b], repo.blockstore)
    pinned = {pin.cid for pin in repo.blockstore.pin_ls("recursive")}
    assert {item.cid for item in result.added} <= pinned


def test_only_hash_matches_stored_add(repo, tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(700_000))
    assert add_paths([path], None).root.cid == add_paths([path], repo.blockstore).root.cid


def test_directory_without_recursive_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError):
        add_paths([tmp_path], None)
