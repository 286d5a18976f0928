"""Reading files back, seeking, and refusing malformed DAGs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cid import DAG_PB, make_cid
from protocol.dagpb import PBLink, PBNode, encode_node
from protocol.errors import NotAFile
from protocol.importer import KUBO_V1_RAW, ImportOptions, build_directory, import_bytes
from protocol.reader import (
    iter_dag,
    list_directory,
    read_file,
    resolve_path,
    stat_node,
)
from protocol.unixfs import DataType, UnixFSData, UnixFSError, encode_data

CHUNK = 262_144
DATA = bytes((i * 7 + i // 256) % 256 for i in range(3 * CHUNK + 1000))


class CountingStore(dict):
    def __init__(self):
        super().__init__()
        self.reads = []

    def get(self, cid):
        self.reads.append(cid)
        return self[cid]


@pytest.fixture(params=["v0", "v1raw"])
def stored(request):
    store = CountingStore()
    options = KUBO_V1_RAW if request.param == "v1raw" else ImportOptions()
    root = import_bytes(DATA, options, store.__setitem__)
    return root, store


def test_whole_file(stored):
    root, store = stored
    assert b"".join(read_file(root.cid, store.get)) == DATA


@pytest.mark.parametrize(
    "offset,length",
    [(0, 1), (CHUNK - 1, 2), (CHUNK, CHUNK), (2 * CHUNK + 5, None), (len(DATA) - 1, 10),
     (len(DATA), 5), (len(DATA) + 100, None), (10, 0)],
)
def test_seek_reads_only_needed_blocks(stored, offset, length):
    root, store = stored
    store.reads.clear()
    got = b"".join(read_file(root.cid, store.get, offset, length))
    end = None if length is None else offset + length
    assert got == DATA[offset:end]
    if length is not None and length <= 2 and offset < len(DATA):
        assert len(store.reads) <= 3  # root + at most two leaves


def test_negative_offsets_refused(stored):
    root, store = stored
    with pytest.raises(ValueError):
        list(read_file(root.cid, store.get, -1))
    with pytest.raises(ValueError):
        list(read_file(root.cid, store.get, 0, -1))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, len(DATA) + 10), st.one_of(st.none(), st.integers(0, 2 * CHUNK)))
def test_seek_property(offset, length):
    store = {}
    root = import_bytes(DATA, ImportOptions(chunk_size=4096, max_links=3), store.__setitem__)
    end = None if length is None else offset + length
    assert b"".join(read_file(root.cid, store.__getitem__, offset, length)) == DATA[offset:end]


def test_directories_list_resolve_and_walk():
    store = {}
    a = import_bytes(b"aaa", emit=store.__setitem__)
    b = import_bytes(b"bbbb", emit=store.__setitem__)
    inner = build_directory([("b.txt", b)], emit=store.__setitem__)
    top = build_directory([("a.txt", a), ("sub", inner)], emit=store.__setitem__)
    assert [e.name for e in list_directory(top.cid, store.__getitem__)] == ["a.txt", "sub"]
    assert resolve_path(top.cid, "sub/b.txt", store.__getitem__) == b.cid
    assert resolve_path(top.cid, "/sub//b.txt/", store.__getitem__) == b.cid
    with pytest.raises(FileNotFoundError):
        resolve_path(top.cid, "sub/missing", store.__getitem__)
    walked = [(path, info.kind) for path, info in iter_dag(top.cid, store.__getitem__)]
    assert walked == [("", "directory"), ("a.txt", "file"), ("sub", "directory"),
                      ("sub/b.txt", "file")]
    assert stat_node(b.cid, store.__getitem__).size == 4
    with pytest.raises(NotAFile):
        list(read_file(top.cid, store.__getitem__))
    with pytest.raises(NotAFile):
        list_directory(a.cid, store.__getitem__)


def _put(store, node: PBNode):
    block = encode_node(node)
    cid = make_cid(block, version=0, codec=DAG_PB)
    store[cid] = block
    return cid


def test_inconsistent_blocksizes_are_refused():
    store = {}
    leaf = import_bytes(b"abc", emit=store.__setitem__)
    lying = UnixFSData(DataType.FILE, filesize=10, blocksizes=(10,))
    root = _put(store, PBNode((PBLink(leaf.cid, "", leaf.tsize),), encode_data(lying)))
    with pytest.raises(UnixFSError):
        list(read_file(root, store.__getitem__))


def test_link_count_mismatch_refused():
    store = {}
    leaf = import_bytes(b"abc", emit=store.__setitem__)
    lying = UnixFSData(DataType.FILE, filesize=3, blocksizes=())
    root = _put(store, PBNode((PBLink(leaf.cid, "", leaf.tsize),), encode_data(lying)))
    with pytest.raises(UnixFSError):
        list(read_file(root, store.__getitem__))


def test_node_without_unixfs_data_refused():
    store = {}
    root = _put(store, PBNode((), None))
    with pytest.raises(UnixFSError):
        list(read_file(root, store.__getitem__))


def test_self_referencing_depth_is_bounded():
    # A chain deeper than MAX_DEPTH: each node claims one child of size 1.
    store = {}
    child = import_bytes(b"x", emit=store.__setitem__).cid
    for _ in range(40):
        data = encode_data(UnixFSData(DataType.FILE, filesize=1, blocksizes=(1,)))
        child = _put(store, PBNode((PBLink(child, "", 1),), data))
    with pytest.raises(UnixFSError):
        list(read_file(child, store.__getitem__))
