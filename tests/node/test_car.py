"""CAR export/import against real stores: round trips, Kubo's block order, and
imports that fail (tampered, truncated, incomplete) leaving the store untouched."""

from __future__ import annotations

import hashlib
import io
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID

from node.blockstore import FILE_NAME, Blockstore, Pin
from node.car import ImportResult, export_car, export_car_file, import_car
from node.errors import BlockNotFound, QuotaExceeded
from protocol.car import (
    CAR_END,
    NEED_DATA,
    CarBlock,
    CarDecoder,
    CarError,
    CarHeader,
    encode_block,
    encode_header,
)
from protocol.cid import DAG_PB, make_cid
from protocol.dagpb import PBLink, PBNode, encode_node
from protocol.errors import BlockMismatch, ChorusError


def raw_block(payload: bytes) -> tuple[CID, bytes]:
    return make_cid(payload), payload


def pb_node(children: list[CID], data: bytes = b"\x08\x02") -> tuple[CID, bytes]:
    node = encode_node(PBNode(tuple(PBLink(child, "", 1) for child in children), data))
    return make_cid(node, version=0, codec=DAG_PB), node


def diamond() -> tuple[CID, dict[CID, bytes], list[CID]]:
    """root -> [left -> [a, shared], right -> [shared, b], a]; returns the DFS order too."""
    a, b, shared = raw_block(b"a" * 100), raw_block(b"b" * 100), raw_block(b"shared" * 50)
    left = pb_node([a[0], shared[0]], b"\x08\x03")
    right = pb_node([shared[0], b[0]], b"\x08\x04")
    root = pb_node([left[0], right[0], a[0]])
    blocks = dict([root, left, right, a, b, shared])
    order = [root[0], left[0], a[0], shared[0], right[0], b[0]]
    return root[0], blocks, order


def open_store(directory: Path, **kwargs: object) -> Blockstore:
    directory.mkdir(parents=True, exist_ok=True)
    return Blockstore(directory / FILE_NAME, **kwargs)  # type: ignore[arg-type]


def car_events(data: bytes) -> list[object]:
    decoder = CarDecoder()
    decoder.receive_data(data)
    decoder.receive_data(b"")
    events = []
    while (event := decoder.next_event()) is not CAR_END:
        assert event is not NEED_DATA
        events.append(event)
    return events


def test_export_is_depth_first_each_block_once(tmp_path: Path) -> None:
    root, blocks, order = diamond()
    with open_store(tmp_path / "a") as store:
        store.put_many(blocks.items())
        out = io.BytesIO()
        progress: list[int] = []
        written = export_car(store, root, out, progress=progress.append)
    data = out.getvalue()
    assert written == len(data) == sum(progress)
    events = car_events(data)
    assert events[0] == CarHeader((root,), 1)
    assert [e.cid for e in events[1:] if isinstance(e, CarBlock)] == order
    expected = encode_header([root]) + b"".join(encode_block(c, blocks[c]) for c in order)
    assert data == expected


def test_round_trip_into_a_fresh_store(tmp_path: Path) -> None:
    root, blocks, _ = diamond()
    with open_store(tmp_path / "a") as source:
        source.put_many(blocks.items())
        source.put(*raw_block(b"not part of the DAG"))
        car = io.BytesIO()
        export_car(source, root, car)
    car.seek(0)
    with open_store(tmp_path / "b") as target:
        result = import_car(target, car)
        assert result == ImportResult((root,), len(blocks), sum(map(len, blocks.values())))
        assert {bytes(c) for c in target.all_cids()} == {
            bytes(CID("base32", 1, "raw", c.digest)) for c in blocks
        }
        assert all(target.get(cid) == data for cid, data in blocks.items())
        assert target.pin_ls("recursive") == [Pin(root, "recursive")]
        again = io.BytesIO()
        export_car(target, root, again)
    assert again.getvalue() == car.getvalue()


def test_import_without_pinning(tmp_path: Path) -> None:
    root, blocks, _ = diamond()
    car = encode_header([root]) + b"".join(encode_block(c, d) for c, d in blocks.items())
    with open_store(tmp_path) as store:
        result = import_car(store, io.BytesIO(car), pin_roots=False)
        assert result.roots == (root,)
        assert store.pin_ls() == []
        assert store.stat().blocks == len(blocks)


def test_export_of_incomplete_dag(tmp_path: Path) -> None:
    root, blocks, _ = diamond()
    missing = next(c for c in blocks if blocks[c] == b"b" * 100)
    with open_store(tmp_path / "store") as store:
        store.put_many((c, d) for c, d in blocks.items() if c != missing)
        with pytest.raises(BlockNotFound) as info:
            export_car(store, root, io.BytesIO())
        assert info.value.cid == missing
        target = tmp_path / "out.car"
        target.write_bytes(b"previous export")
        with pytest.raises(BlockNotFound):
            export_car_file(store, root, target)
        assert target.read_bytes() == b"previous export"  # neither replaced nor truncated
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.car", "store"]
        store.put(missing, blocks[missing])
        written = export_car_file(store, root, target)
    assert target.stat().st_size == written
    assert car_events(target.read_bytes())[0] == CarHeader((root,), 1)


def test_tampered_block_stores_nothing_and_names_the_cid(tmp_path: Path) -> None:
    root, blocks, order = diamond()
    victim = order[4]
    sections = [encode_block(c, blocks[c] if c != victim else b"evil" + blocks[c]) for c in order]
    car = encode_header([root]) + b"".join(sections)
    with open_store(tmp_path) as store:
        store.put(*raw_block(b"already there"))
        before = store.stat()
        with pytest.raises(BlockMismatch, match=str(victim)) as info:
            import_car(store, io.BytesIO(car))
        assert "offset" in str(info.value)
        assert store.stat() == before
        assert store.pin_ls() == []
        assert not any(store.has(c) for c in order)


def test_truncated_car_stores_nothing(tmp_path: Path) -> None:
    root, blocks, order = diamond()
    car = encode_header([root]) + b"".join(encode_block(c, blocks[c]) for c in order)
    with open_store(tmp_path) as store:
        with pytest.raises(CarError, match="truncated"):
            import_car(store, io.BytesIO(car[:-3]))
        assert store.stat().blocks == 0


def test_incomplete_dag_with_pin_roots_stores_nothing(tmp_path: Path) -> None:
    root, blocks, order = diamond()
    car = encode_header([root]) + b"".join(encode_block(c, blocks[c]) for c in order[:-1])
    with open_store(tmp_path) as store:
        with pytest.raises(BlockNotFound) as info:
            import_car(store, io.BytesIO(car))
        assert info.value.cid == order[-1]
        assert store.stat().blocks == 0
        # Without pinning, a partial DAG (e.g. a gateway's partial CAR) is fine.
        assert import_car(store, io.BytesIO(car), pin_roots=False).blocks == len(order) - 1


def test_import_over_quota_stores_nothing(tmp_path: Path) -> None:
    root, blocks, order = diamond()
    car = encode_header([root]) + b"".join(encode_block(c, blocks[c]) for c in order)
    with open_store(tmp_path, quota=300) as store:
        with pytest.raises(QuotaExceeded):
            import_car(store, io.BytesIO(car))
        assert store.stat().blocks == 0


class _GeneratedCar(io.RawIOBase):
    """A CAR of `count` distinct 256 KiB raw blocks, produced as it is read."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._index = 0
        self._pending = bytearray(encode_header([self._cid(0)[0]]))

    @staticmethod
    def _cid(index: int) -> tuple[CID, bytes]:
        seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
        return raw_block(seed * (262144 // 32))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer) and self._index < self._count:
            self._pending += encode_block(*self._cid(self._index))
            self._index += 1
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        del self._pending[:n]
        return n


def test_import_streams_in_constant_memory(tmp_path: Path) -> None:
    count = 160  # 40 MiB of blocks
    with open_store(tmp_path) as store:
        tracemalloc.start()
        try:
            result = import_car(store, io.BufferedReader(_GeneratedCar(count)), pin_roots=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.blocks == count and result.bytes == count * 262144
        assert store.stat().blocks == count
    assert peak < 24 * 1024 * 1024, f"peak {peak} bytes for a 40 MiB import"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_damaged_car_is_refused_whole(data: st.DataObject) -> None:
    root, blocks, order = diamond()
    tampered = bytearray(
        encode_header([root]) + b"".join(encode_block(c, blocks[c]) for c in order)
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        position = data.draw(st.integers(min_value=0, max_value=len(tampered) - 1))
        tampered[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with tempfile.TemporaryDirectory() as directory, open_store(Path(directory)) as store:
        store.put(*raw_block(b"kept"))
        try:
            import_car(store, io.BytesIO(bytes(tampered)))
        except ChorusError:
            assert store.stat().blocks == 1
            assert store.pin_ls() == []
        else:  # a flip that still makes a valid CAR of valid blocks (e.g. in a Tsize)
            assert store.verify().ok
