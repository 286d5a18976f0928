"""The importer's layout rules, checked structurally (the byte-for-byte checks
against an independent implementation are in test_importer_vectors.py)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cid import DAG_PB, RAW, cid_to_text, verify_block
from protocol.dagpb import decode_node
from protocol.errors import ImportError_
from protocol.importer import (
    KUBO_DEFAULT,
    KUBO_V1_RAW,
    DirectoryTooLarge,
    Entry,
    ImportOptions,
    build_directory,
    fixed_chunks,
    import_bytes,
    import_file,
)
from protocol.reader import read_file
from protocol.unixfs import DataType, decode_data

CHUNK = 262_144


def collect(data, options=KUBO_DEFAULT):
    blocks = {}
    root = import_bytes(data, options, lambda cid, block: blocks.__setitem__(cid, block))
    return root, blocks


def test_well_known_kubo_cids():
    assert cid_to_text(import_bytes(b"hello world\n").cid) == (
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    )
    assert cid_to_text(import_bytes(b"").cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert cid_to_text(import_bytes(b"", KUBO_V1_RAW).cid) == (
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )
    assert cid_to_text(build_directory([]).cid) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def test_every_emitted_block_verifies_and_parents_follow_children():
    data = bytes(range(256)) * 5000
    seen = []
    root = import_bytes(data, KUBO_DEFAULT, lambda cid, block: seen.append((cid, block)))
    for cid, block in seen:
        verify_block(cid, block)
    assert seen[-1][0] == root.cid
    position = {cid: i for i, (cid, _) in enumerate(seen)}
    for cid, block in seen:
        for link in decode_node(block).links:
            assert position[link.cid] < position[cid]


def test_single_chunk_file_is_its_own_leaf():
    root, blocks = collect(b"x" * CHUNK)
    assert len(blocks) == 1
    fs = decode_data(decode_node(blocks[root.cid]).data)
    assert fs.type == DataType.FILE and fs.filesize == CHUNK and len(fs.data) == CHUNK


def test_second_chunk_makes_a_parent_with_blocksizes():
    data = b"a" * CHUNK + b"b"
    root, blocks = collect(data)
    node = decode_node(blocks[root.cid])
    fs = decode_data(node.data)
    assert fs.blocksizes == (CHUNK, 1) and fs.filesize == CHUNK + 1 and fs.data is None
    assert [link.name for link in node.links] == ["", ""]
    assert node.links[0].tsize == len(blocks[node.links[0].cid])


def test_lone_child_on_a_new_level_is_wrapped_like_kubo():
    # 3 chunks with max_links=2: root -> [node(2 leaves), node(1 leaf)], not root -> [node, leaf].
    options = ImportOptions(chunk_size=4, max_links=2)
    root, blocks = collect(b"aaaabbbbcccc", options)
    top = decode_node(blocks[root.cid])
    assert len(top.links) == 2
    second = decode_node(blocks[top.links[1].cid])
    assert len(second.links) == 1
    assert decode_data(second.data).blocksizes == (4,)


def test_raw_leaves_profile_uses_raw_leaves_and_v1_parents():
    root, blocks = collect(b"z" * (CHUNK + 10), KUBO_V1_RAW)
    assert root.cid.version == 1 and root.cid.codec.code == DAG_PB
    leaves = [cid for cid in blocks if cid != root.cid]
    assert {cid.codec.code for cid in leaves} == {RAW}


def test_tsize_is_cumulative_block_bytes():
    data = b"".join(i.to_bytes(4, "big") for i in range(200_000))  # no two chunks alike
    root, blocks = collect(data)
    assert root.tsize == sum(len(block) for block in blocks.values())


def test_fixed_chunks_rechunks_any_piece_sizes():
    pieces = [b"ab", b"", b"cdefg", b"h" * 10, b"i"]
    assert list(fixed_chunks(pieces, 4)) == [b"abcd", b"efgh", b"hhhh", b"hhhh", b"hi"]
    assert list(fixed_chunks([], 4)) == []
    assert list(fixed_chunks([b"abcd"], 4)) == [b"abcd"]


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=3000),
    st.integers(1, 64),
    st.integers(2, 5),
    st.lists(st.integers(1, 200), min_size=1, max_size=10),
    st.booleans(),
)
def test_round_trip_any_layout(data, chunk, max_links, piece_sizes, raw):
    options = ImportOptions(
        cid_version=1 if raw else 0, raw_leaves=raw, chunk_size=chunk, max_links=max_links
    )
    pieces, offset, i = [], 0, 0
    while offset < len(data):
        size = piece_sizes[i % len(piece_sizes)]
        pieces.append(data[offset : offset + size])
        offset += size
        i += 1
    blocks = {}
    root = import_file(pieces, options, blocks.__setitem__)
    assert root.cid == import_bytes(data, options).cid  # piece sizes never change the CID
    assert b"".join(read_file(root.cid, blocks.__getitem__)) == data
    assert root.filesize == len(data)


def test_directory_links_sorted_by_name_bytes():
    a = import_bytes(b"a")
    b = import_bytes(b"b")
    blocks = {}
    directory = build_directory([("b.txt", a), ("A.txt", b), ("a.txt", a)], emit=blocks.__setitem__)
    names = [link.name for link in decode_node(blocks[directory.cid]).links]
    assert names == ["A.txt", "a.txt", "b.txt"]
    assert decode_data(decode_node(blocks[directory.cid]).data).type == DataType.DIRECTORY


@pytest.mark.parametrize("name", ["", "a/b", ".", ".."])
def test_directory_refuses_bad_names(name):
    with pytest.raises(ImportError_):
        build_directory([(name, import_bytes(b"x"))])


def test_directory_refuses_duplicates():
    entry = import_bytes(b"x")
    with pytest.raises(ImportError_):
        build_directory([("x", entry), ("x", entry)])


def test_directory_kubo_would_shard_is_refused():
    entry = import_bytes(b"x")
    children = [(f"{i:0200d}", entry) for i in range(1200)]
    with pytest.raises(DirectoryTooLarge) as info:
        build_directory(children)
    assert "1200 entries" in str(info.value)


def test_options_are_validated():
    with pytest.raises(ValueError):
        ImportOptions(cid_version=2)
    with pytest.raises(ValueError):
        ImportOptions(chunk_size=0)
    with pytest.raises(ValueError):
        ImportOptions(max_links=1)


def test_entry_reports_filesize():
    assert import_bytes(b"12345").filesize == 5
    assert isinstance(import_bytes(b""), Entry)
