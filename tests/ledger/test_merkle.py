"""ledger/merkle.py against RFC 9162 itself, published vectors and hostile input.

The reference below is written straight from the RFC's recursive definitions (MTH in
2.1.1, PATH in 2.1.3.1, PROOF/SUBPROOF in 2.1.4.1) over leaf *data*, with its own
hashing and its own split: it shares no code with the implementation, which works
iteratively on stored perfect-subtree hashes and verifies with the RFC's bit loops.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    MalformedHash,
    MemoryNodeStore,
    MerkleError,
    MerkleLog,
    Node,
    NodeStoreError,
    ProofError,
    ProofFormatError,
    ProofLengthError,
    ProofRangeError,
    RootMismatch,
    TreeRangeError,
    consistency_proof,
    consistency_proof_length,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from protocol.errors import ChorusError, DecodeError

# --- the independent reference: RFC 9162 2.1, recursive, over leaf data ---------------


def ref_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1), by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH({}) = HASH(); MTH({d0}) = HASH(0x00 || d0);
    MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    if len(d) == 0:
        return ref_hash(b"")
    if len(d) == 1:
        return ref_hash(b"\x00" + d[0])
    k = ref_k(len(d))
    return ref_hash(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(0, {d0}) = {}; PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k,
    PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k."""
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])};
    for m < n: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k,
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) if m > k."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return ref_subproof(m, d, True)


# --- fixtures ----------------------------------------------------------------------------


def data(i: int) -> bytes:
    """Distinct leaf data (distinct leaves, so a proof for one index fits no other)."""
    return b"entry-" + i.to_bytes(4, "big")


def build(leaves: list[bytes]) -> tuple[MerkleLog, MemoryNodeStore]:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    for d in leaves:
        store.add(log.append(leaf_hash(d)))
    return log, store


SMALL = [data(i) for i in range(64)]
SMALL_LOG, SMALL_STORE = build(SMALL)
LARGE_N = 3000
LARGE = [data(i) for i in range(LARGE_N)]
LARGE_LOG, LARGE_STORE = build(LARGE)


# --- known answers ------------------------------------------------------------------------

# The 8-leaf reference tree of Certificate Transparency. Leaves, roots for sizes 1..8,
# node hashes and proofs are copied from:
#  - google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
#    (kInputs, kSHA256EmptyTreeHash, kSHA256Roots, kSHA256Paths, kSHA256Proofs; leaf
#    numbers there are 1-based, indices here 0-based);
#  - transparency-dev/merkle (Trillian's Merkle code), testonly/constants.go
#    (LeafInputs, NodeHashes, RootHashes, EmptyRootHash) and proof/verify_test.go
#    (inclusionProofs, consistencyProofs);
#  - transparency-dev/merkle rfc6962/rfc6962_test.go for the empty tree and leaf hashes.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# NodeHashes(): [level][index] for every perfect subtree of the 8-leaf tree.
CT_NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
# (leaf index, tree size, PATH)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, PROOF)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

CT_LOG, CT_STORE = build(CT_LEAVES)


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def test_empty_tree_hash_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == CT_EMPTY_ROOT
    assert root([]) == EMPTY_ROOT
    assert MerkleLog().root() == EMPTY_ROOT
    assert root_at(0, CT_STORE) == EMPTY_ROOT


def test_leaf_hashes_from_trillian():
    # rfc6962_test.go: the empty leaf is not the empty tree; "L123456" as a leaf.
    assert leaf_hash(b"").hex() == CT_ROOTS[0]
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert leaf_hash(bytearray(b"L123456")) == leaf_hash(memoryview(b"L123456"))


def test_ct_roots_for_every_size_incrementally_and_at_once():
    log = MerkleLog()
    for size, d in enumerate(CT_LEAVES, start=1):
        log.append(leaf_hash(d))
        assert log.root().hex() == CT_ROOTS[size - 1]
        assert root([leaf_hash(x) for x in CT_LEAVES[:size]]).hex() == CT_ROOTS[size - 1]
        assert CT_LOG.root_at(size).hex() == CT_ROOTS[size - 1]


def test_ct_node_hashes_are_what_append_hands_out():
    for level, row in enumerate(CT_NODES):
        for index, expected in enumerate(row):
            assert CT_STORE(level, index).hex() == expected
    assert len(CT_STORE) == sum(len(row) for row in CT_NODES)


@pytest.mark.parametrize("index,size,path", CT_INCLUSION)
def test_ct_inclusion_vectors(index, size, path):
    assert hexes(CT_LOG.inclusion_proof(index, size)) == path
    proof = [bytes.fromhex(h) for h in path]
    root_hash = bytes.fromhex(CT_ROOTS[size - 1])
    verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, root_hash)


@pytest.mark.parametrize("old,new,path", CT_CONSISTENCY)
def test_ct_consistency_vectors(old, new, path):
    assert hexes(CT_LOG.consistency_proof(old, new)) == path
    proof = [bytes.fromhex(h) for h in path]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1])
    verify_consistency(old, new, old_root, new_root, proof)


# --- exhaustive against the reference, sizes 1..64 ----------------------------------------


def test_roots_match_reference_for_sizes_0_to_64():
    log = MerkleLog()
    assert log.root() == ref_mth([])
    for n in range(1, 65):
        log.append(leaf_hash(SMALL[n - 1]))
        expected = ref_mth(SMALL[:n])
        assert log.root() == expected
        assert SMALL_LOG.root_at(n) == expected
        assert root([leaf_hash(d) for d in SMALL[:n]]) == expected


def test_inclusion_proofs_match_reference_and_verify_for_sizes_1_to_64():
    for n in range(1, 65):
        root_hash = ref_mth(SMALL[:n])
        for i in range(n):
            expected = ref_path(i, SMALL[:n])
            got = SMALL_LOG.inclusion_proof(i, n)
            assert got == expected, (i, n)
            assert len(got) == inclusion_proof_length(i, n)
            verify_inclusion(leaf_hash(SMALL[i]), i, n, expected, root_hash)


def test_consistency_proofs_match_reference_and_verify_for_sizes_1_to_64():
    roots = [ref_mth(SMALL[:n]) for n in range(65)]
    for n in range(1, 65):
        for m in range(1, n + 1):
            expected = ref_proof(m, SMALL[:n])
            got = SMALL_LOG.consistency_proof(m, n)
            assert got == expected, (m, n)
            assert len(got) == consistency_proof_length(m, n)
            verify_consistency(m, n, roots[m], roots[n], expected)


def test_proofs_at_the_current_size_of_a_log_of_exactly_that_size():
    for n in range(1, 40):
        log, _ = build(SMALL[:n])
        assert log.inclusion_proof(n - 1) == ref_path(n - 1, SMALL[:n])
        assert log.consistency_proof(1) == ref_proof(1, SMALL[:n])
        assert log.root_at(n) == log.root()


# --- hypothesis: larger trees -----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_large_inclusion_matches_reference(draw):
    n = draw.draw(st.integers(65, LARGE_N))
    i = draw.draw(st.integers(0, n - 1))
    expected = ref_path(i, LARGE[:n])
    assert LARGE_LOG.inclusion_proof(i, n) == expected
    verify_inclusion(leaf_hash(LARGE[i]), i, n, expected, ref_mth(LARGE[:n]))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_large_consistency_matches_reference(draw):
    n = draw.draw(st.integers(65, LARGE_N))
    m = draw.draw(st.integers(1, n))
    expected = ref_proof(m, LARGE[:n])
    assert LARGE_LOG.consistency_proof(m, n) == expected
    verify_consistency(m, n, ref_mth(LARGE[:m]), ref_mth(LARGE[:n]), expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, LARGE_N), st.integers(0, 200))
def test_resume_from_the_store_then_keep_appending(size, more):
    log = MerkleLog.resume(size, LARGE_STORE)
    assert log.size == size
    assert log.root() == LARGE_LOG.root_at(size)
    assert log.frontier() == [
        Node(level, index, LARGE_STORE(level, index)) for level, index, _ in log.frontier()
    ]
    for d in LARGE[size : size + more]:
        for node in log.append(leaf_hash(d)):
            assert node.hash == LARGE_STORE(node.level, node.index)
    assert log.root() == LARGE_LOG.root_at(min(size + more, LARGE_N))


def test_append_hands_out_each_completed_subtree_once():
    log = MerkleLog()
    seen = set()
    for i in range(300):
        nodes = log.append(leaf_hash(data(i)))
        trailing_ones = (~i & (i + 1)).bit_length() - 1
        assert len(nodes) == 1 + trailing_ones
        assert nodes[0] == Node(0, i, leaf_hash(data(i)))
        for node in nodes:
            assert (node.index + 1) << node.level == ((i + 1) >> node.level) << node.level
            assert (node.level, node.index) not in seen
            seen.add((node.level, node.index))
    assert len(seen) == 2 * 300 - (300).bit_count()


def test_proofs_cost_logarithmic_reads():
    n = 100_000
    log, store = build([data(i) for i in range(n)])
    reads = []

    def counting(level: int, index: int) -> bytes:
        reads.append((level, index))
        return store(level, index)

    for index in (0, 1, n // 3, n - 2, n - 1):
        reads.clear()
        inclusion_proof(index, n, counting)
        assert len(reads) <= 2 * n.bit_length()
    for old in (1, 2, 777, n // 2, n - 1):
        reads.clear()
        consistency_proof(old, n, counting)
        assert len(reads) <= 2 * n.bit_length()
    assert root_at(n, store) == log.root()


# --- tampering is rejected ----------------------------------------------------------------


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def inclusion_case(n: int, i: int) -> tuple[bytes, list[bytes], bytes]:
    return leaf_hash(LARGE[i]), LARGE_LOG.inclusion_proof(i, n), LARGE_LOG.root_at(n)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_inclusion_bit_flips_are_rejected(draw):
    n = draw.draw(st.integers(1, 500))
    i = draw.draw(st.integers(0, n - 1))
    leaf, proof, root_hash = inclusion_case(n, i)
    bit = draw.draw(st.integers(0, 255))
    target = draw.draw(st.sampled_from(["leaf", "root"] + (["proof"] if proof else [])))
    if target == "leaf":
        leaf = flip(leaf, bit)
    elif target == "root":
        root_hash = flip(root_hash, bit)
    else:
        k = draw.draw(st.integers(0, len(proof) - 1))
        proof[k] = flip(proof[k], bit)
    with pytest.raises(RootMismatch):
        verify_inclusion(leaf, i, n, proof, root_hash)


# A proof only fixes the tree's shape along its path, as RFC 9162's verifiers read it:
# which side each sibling is on (and, for consistency, which hashes the old tree
# shares). Two claims with the same shape run the same hashes, so e.g. a proof for
# leaf 0 of 65 leaves also holds for leaf 0 of 66 with the same root (no tree of 66
# leaves can have that root without a SHA-256 collision, and the signed tree head is
# what binds a size to a root). The properties below are therefore: a claim is
# accepted exactly when its shape, from the RFC's recursive definitions, is the same.


def ref_path_sides(m: int, n: int) -> list[str]:
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path_sides(m, k), "right"]
    return [*ref_path_sides(m - k, n - k), "left"]


def ref_proof_sides(m: int, n: int, b: bool = True) -> list[str]:
    if m == n:
        return [] if b else ["old subtree"]
    k = ref_k(n)
    if m <= k:
        return [*ref_proof_sides(m, k, b), "right"]
    return [*ref_proof_sides(m - k, n - k, False), "left"]


def near(x: int) -> st.SearchStrategy[int]:
    """Sizes close to x (where equal shapes are common) or anywhere."""
    return st.integers(max(0, x - 4), x + 4) | st.integers(0, 600)


def accepts(verify, *args) -> bool:
    try:
        verify(*args)
    except ProofError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_inclusion_for_another_index_or_size_holds_only_for_the_same_shape(draw):
    n = draw.draw(st.integers(1, 500))
    i = draw.draw(st.integers(0, n - 1))
    leaf, proof, root_hash = inclusion_case(n, i)
    other_i = draw.draw(st.integers(0, 600).filter(lambda x: x != i))
    other_n = draw.draw(near(n).filter(lambda x: x != n))
    # Another leaf of the same tree: the path's sides spell the index, never the same.
    assert not accepts(verify_inclusion, leaf, other_i, n, proof, root_hash)
    same_shape = i < other_n and ref_path_sides(i, other_n) == ref_path_sides(i, n)
    assert accepts(verify_inclusion, leaf, i, other_n, proof, root_hash) == same_shape


def test_a_proof_fixes_the_shape_not_the_size():
    # Leaf 0 of 65 and of 66 leaves: the same siblings on the same sides.
    leaf, proof, root65 = inclusion_case(65, 0)
    verify_inclusion(leaf, 0, 66, proof, root65)
    assert ref_path_sides(0, 65) == ref_path_sides(0, 66)
    verify_consistency(1, 66, LARGE_LOG.root_at(1), root65, LARGE_LOG.consistency_proof(1, 65))
    # ...while the real tree of 66 leaves has another root, so a signed head
    # (66, root65) could never come with an inclusion proof for leaf 65.
    assert LARGE_LOG.root_at(66) != root65


def test_inclusion_size_probes_of_ct_and_trillian_are_rejected():
    for n in range(1, 65):
        root_hash = SMALL_LOG.root_at(n)
        for i in range(n):
            leaf, proof = leaf_hash(SMALL[i]), SMALL_LOG.inclusion_proof(i, n)
            for other_i, other_n in ((i - 1, n), (i + 1, n), (i ^ 2, n), (i, 2 * n), (i, n // 2)):
                if (other_i, other_n) != (i, n):
                    assert not accepts(verify_inclusion, leaf, other_i, other_n, proof, root_hash)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_consistency_bit_flips_are_rejected(draw):
    n = draw.draw(st.integers(2, 500))
    m = draw.draw(st.integers(1, n - 1))
    proof = LARGE_LOG.consistency_proof(m, n)
    old_root, new_root = LARGE_LOG.root_at(m), LARGE_LOG.root_at(n)
    bit = draw.draw(st.integers(0, 255))
    target = draw.draw(st.sampled_from(["old", "new", "proof"]))
    if target == "old":
        old_root = flip(old_root, bit)
    elif target == "new":
        new_root = flip(new_root, bit)
    else:
        k = draw.draw(st.integers(0, len(proof) - 1))
        proof[k] = flip(proof[k], bit)
    with pytest.raises(RootMismatch):
        verify_consistency(m, n, old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_consistency_for_other_sizes_holds_only_for_the_same_shape(draw):
    n = draw.draw(st.integers(2, 500))
    m = draw.draw(st.integers(1, n - 1))
    proof = LARGE_LOG.consistency_proof(m, n)
    old_root, new_root = LARGE_LOG.root_at(m), LARGE_LOG.root_at(n)
    other_m = draw.draw(near(m).filter(lambda x: x != m))
    other_n = draw.draw(near(n).filter(lambda x: x != n))
    shape = ref_proof_sides(m, n)
    for m2, n2 in ((other_m, n), (m, other_n), (other_m, other_n)):
        same_shape = 0 < m2 <= n2 and ref_proof_sides(m2, n2) == shape
        assert accepts(verify_consistency, m2, n2, old_root, new_root, proof) == same_shape
    assert not accepts(verify_consistency, m, n, new_root, old_root, proof)


def test_consistency_size_probes_of_ct_and_trillian_are_rejected():
    for n in range(2, 65):
        new_root = SMALL_LOG.root_at(n)
        for m in range(1, n):
            old_root, proof = SMALL_LOG.root_at(m), SMALL_LOG.consistency_proof(m, n)
            for m2, n2 in ((m - 1, n), (m + 1, n), (m ^ 2, n), (m, 2 * n), (m, n // 2)):
                if (m2, n2) != (m, n):
                    assert not accepts(verify_consistency, m2, n2, old_root, new_root, proof)


def test_reshaped_proofs_are_rejected_for_every_small_tree():
    # The probes of CT's and Trillian's verifier tests: garbage before or after,
    # an element dropped or inserted, an element replaced by a root.
    some = hashlib.sha256(b"some hash").digest()
    for n in range(1, 33):
        root_hash = SMALL_LOG.root_at(n)
        for i in range(n):
            leaf, proof = leaf_hash(SMALL[i]), SMALL_LOG.inclusion_proof(i, n)
            shapes = [[*proof, some], [some, *proof], [*proof, root_hash], [root_hash, *proof]]
            shapes += [proof[:-1], proof[1:]] if proof else []
            shapes += [[proof[0], some, *proof[1:]]] if proof else []
            for bad in shapes:
                with pytest.raises(ProofLengthError):
                    verify_inclusion(leaf, i, n, bad, root_hash)
            for k in range(len(proof)):
                with pytest.raises(RootMismatch):
                    verify_inclusion(
                        leaf, i, n, [*proof[:k], EMPTY_ROOT, *proof[k + 1 :]], root_hash
                    )
        for m in range(1, n):
            old_root, proof = SMALL_LOG.root_at(m), SMALL_LOG.consistency_proof(m, n)
            for bad in ([], [*proof, some], [some, *proof], proof[:-1], [*proof, proof[-1]]):
                with pytest.raises(ProofLengthError):
                    verify_consistency(m, n, old_root, root_hash, bad)
            for k in range(len(proof)):
                with pytest.raises(RootMismatch):
                    verify_consistency(
                        m, n, old_root, root_hash, [*proof[:k], EMPTY_ROOT, *proof[k + 1 :]]
                    )


# --- hostile and nonsensical input: typed errors, never IndexError & co. ------------------

GOOD_LEAF = leaf_hash(SMALL[3])
GOOD_ROOT = SMALL_LOG.root_at(8)
GOOD_PATH = SMALL_LOG.inclusion_proof(3, 8)
OLD_ROOT = SMALL_LOG.root_at(5)
GOOD_CONSISTENCY = SMALL_LOG.consistency_proof(5, 8)


def test_good_inputs_used_below_verify():
    verify_inclusion(GOOD_LEAF, 3, 8, GOOD_PATH, GOOD_ROOT)
    verify_consistency(5, 8, OLD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY)


@pytest.mark.parametrize(
    "args,error",
    [
        ((GOOD_LEAF, 0, 0, [], EMPTY_ROOT), ProofRangeError),  # empty tree has no leaf
        ((GOOD_LEAF, 8, 8, GOOD_PATH, GOOD_ROOT), ProofRangeError),  # index == size
        ((GOOD_LEAF, 9, 8, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, -1, 8, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, 3, -8, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, 3, 2**64, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, "3", 8, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, 3, 8.0, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF, True, 8, GOOD_PATH, GOOD_ROOT), ProofRangeError),
        ((GOOD_LEAF[:31], 3, 8, GOOD_PATH, GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF + b"\0", 3, 8, GOOD_PATH, GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF.hex(), 3, 8, GOOD_PATH, GOOD_ROOT), ProofFormatError),
        ((None, 3, 8, GOOD_PATH, GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, GOOD_PATH, b""), ProofFormatError),
        ((GOOD_LEAF, 3, 8, GOOD_PATH, 12345), ProofFormatError),
        ((GOOD_LEAF, 3, 8, None, GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, b"".join(GOOD_PATH), GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, iter(GOOD_PATH), GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, [*GOOD_PATH[:2], GOOD_PATH[2][:16]], GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, [*GOOD_PATH[:2], None], GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, [*GOOD_PATH[:2], 7], GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, [*GOOD_PATH[:2], "ab" * 32], GOOD_ROOT), ProofFormatError),
        ((GOOD_LEAF, 3, 8, [], GOOD_ROOT), ProofLengthError),
        ((GOOD_LEAF, 3, 8, GOOD_PATH[:2], GOOD_ROOT), ProofLengthError),
        ((GOOD_LEAF, 3, 8, [*GOOD_PATH, GOOD_ROOT], GOOD_ROOT), ProofLengthError),
        ((GOOD_LEAF, 3, 8, [GOOD_ROOT] * 1_000_000, GOOD_ROOT), ProofLengthError),
        ((GOOD_LEAF, 0, 1, [GOOD_ROOT], GOOD_LEAF), ProofLengthError),
        ((GOOD_LEAF, 0, 1, [], GOOD_ROOT), RootMismatch),
        ((GOOD_LEAF, 2, 8, GOOD_PATH, GOOD_ROOT), RootMismatch),
    ],
)
def test_verify_inclusion_refusals(args, error):
    with pytest.raises(error) as caught:
        verify_inclusion(*args)
    assert isinstance(caught.value, ProofError)
    assert isinstance(caught.value, ChorusError)
    assert caught.value.reason in {"range", "format", "length", "root-mismatch"}
    assert str(caught.value)


@pytest.mark.parametrize(
    "args,error",
    [
        ((8, 5, GOOD_ROOT, OLD_ROOT, GOOD_CONSISTENCY), ProofRangeError),  # time travel
        ((1, 0, GOOD_ROOT, EMPTY_ROOT, []), ProofRangeError),
        ((0, 0, EMPTY_ROOT, EMPTY_ROOT, []), ProofRangeError),  # nothing to prove
        ((0, 8, EMPTY_ROOT, GOOD_ROOT, []), ProofRangeError),
        ((-1, 8, OLD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY), ProofRangeError),
        ((5, 2**64, OLD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY), ProofRangeError),
        ((5, None, OLD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY), ProofRangeError),
        ((5, 8, OLD_ROOT[:-1], GOOD_ROOT, GOOD_CONSISTENCY), ProofFormatError),
        ((5, 8, OLD_ROOT, None, GOOD_CONSISTENCY), ProofFormatError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, "proof"), ProofFormatError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, [b"", *GOOD_CONSISTENCY[1:]]), ProofFormatError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, []), ProofLengthError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY[1:]), ProofLengthError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, [*GOOD_CONSISTENCY, OLD_ROOT]), ProofLengthError),
        ((5, 8, OLD_ROOT, GOOD_ROOT, [OLD_ROOT] * 10**6), ProofLengthError),
        ((8, 8, GOOD_ROOT, GOOD_ROOT, [GOOD_ROOT]), ProofLengthError),  # equal sizes: empty
        ((8, 8, OLD_ROOT, GOOD_ROOT, []), RootMismatch),  # two roots for one size: a fork
        ((5, 8, GOOD_ROOT, GOOD_ROOT, GOOD_CONSISTENCY), RootMismatch),
    ],
)
def test_verify_consistency_refusals(args, error):
    with pytest.raises(error) as caught:
        verify_consistency(*args)
    assert isinstance(caught.value, ProofError)
    assert str(caught.value)


def test_equal_sizes_with_equal_roots_are_consistent():
    for n in (1, 2, 5, 64):
        verify_consistency(n, n, SMALL_LOG.root_at(n), SMALL_LOG.root_at(n), [])


@pytest.mark.parametrize(
    "call",
    [
        lambda: SMALL_LOG.inclusion_proof(8, 8),
        lambda: SMALL_LOG.inclusion_proof(0, 0),
        lambda: SMALL_LOG.inclusion_proof(-1, 8),
        lambda: SMALL_LOG.inclusion_proof(0, 65),  # beyond the log
        lambda: SMALL_LOG.inclusion_proof(64),
        lambda: SMALL_LOG.consistency_proof(9, 8),
        lambda: SMALL_LOG.consistency_proof(0, 8),
        lambda: SMALL_LOG.consistency_proof(0),
        lambda: SMALL_LOG.consistency_proof(1, 65),
        lambda: SMALL_LOG.consistency_proof("1", 8),
        lambda: SMALL_LOG.root_at(65),
        lambda: SMALL_LOG.root_at(-1),
        lambda: inclusion_proof(5, 3, SMALL_STORE),
        lambda: consistency_proof(5, 3, SMALL_STORE),
        lambda: root_at(2**64, SMALL_STORE),
        lambda: MerkleLog.resume(-1, SMALL_STORE),
    ],
)
def test_proof_requests_out_of_range(call):
    with pytest.raises(TreeRangeError) as caught:
        call()
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, ProofError)


def test_store_trouble_is_a_node_store_error():
    def lookup_error(level: int, index: int) -> bytes:
        raise KeyError((level, index))

    def missing(level: int, index: int) -> bytes | None:
        return None

    def short(level: int, index: int) -> bytes:
        return b"\x01" * 31

    for reader in (lookup_error, missing, short, MemoryNodeStore()):
        with pytest.raises(NodeStoreError):
            inclusion_proof(3, 8, reader)
        with pytest.raises(NodeStoreError):
            consistency_proof(3, 8, reader)
        with pytest.raises(NodeStoreError):
            root_at(7, reader)
        with pytest.raises(NodeStoreError):
            MerkleLog.resume(7, reader)
    # Beyond what the store holds (the log and the store disagree).
    with pytest.raises(NodeStoreError):
        inclusion_proof(0, 65, SMALL_STORE)
    log = MerkleLog()
    log.append(GOOD_LEAF)
    log.append(GOOD_LEAF)
    with pytest.raises(NodeStoreError):
        log.inclusion_proof(0)  # built without a store
    assert log.root_at(2) == log.root()  # the current root needs none


def test_memory_store_refuses_gaps_and_rewrites():
    store = MemoryNodeStore()
    log = MerkleLog(store)
    nodes = log.append(GOOD_LEAF)
    store.add(nodes)
    store.add(nodes)  # the same node again is harmless (a retried write)
    with pytest.raises(NodeStoreError):
        store.add([Node(0, 0, GOOD_ROOT)])
    with pytest.raises(NodeStoreError):
        store.add([Node(0, 5, GOOD_ROOT)])
    with pytest.raises(NodeStoreError):
        store(0, 1)
    with pytest.raises(NodeStoreError):
        store(3, 0)
    with pytest.raises(NodeStoreError):
        store(0, -1)
    with pytest.raises(NodeStoreError):
        store.add([Node(-1, 0, GOOD_ROOT)])
    with pytest.raises(MalformedHash):
        store.add([Node(0, 1, GOOD_ROOT[:31])])  # would misalign every later node
    assert len(store) == 1
    assert store(0, 0) == GOOD_LEAF


def test_proof_length_helpers_refuse_impossible_trees():
    for args in ((0, 0), (5, 5), (-1, 3)):
        with pytest.raises(TreeRangeError):
            inclusion_proof_length(*args)
    for args in ((0, 5), (6, 5), (-1, 3)):
        with pytest.raises(TreeRangeError):
            consistency_proof_length(*args)


@pytest.mark.parametrize("bad", [b"", b"\0" * 31, b"\0" * 33, "00" * 32, None, 32, [0] * 32])
def test_hashes_must_be_32_bytes(bad):
    log = MerkleLog()
    with pytest.raises(MalformedHash) as caught:
        log.append(bad)
    assert isinstance(caught.value, DecodeError)
    assert log.size == 0
    with pytest.raises(MalformedHash):
        node_hash(GOOD_LEAF, bad)
    with pytest.raises(MalformedHash):
        node_hash(bad, GOOD_LEAF)
    with pytest.raises(MalformedHash):
        root([GOOD_LEAF, bad])


def test_node_hash_and_append_take_bytes_like_hashes():
    assert node_hash(bytearray(GOOD_LEAF), memoryview(GOOD_ROOT)) == ref_hash(
        b"\x01" + GOOD_LEAF + GOOD_ROOT
    )
    log = MerkleLog()
    mutable = bytearray(GOOD_LEAF)
    (node,) = log.append(mutable)
    mutable[0] ^= 1  # the log keeps its own copy
    assert node.hash == GOOD_LEAF == log.root()


def test_leaf_data_must_be_bytes():
    with pytest.raises(TypeError):
        leaf_hash("entry")  # type: ignore[arg-type]


def test_every_error_is_a_merkle_error():
    for error in (
        MalformedHash,
        TreeRangeError,
        NodeStoreError,
        ProofError,
        ProofRangeError,
        ProofFormatError,
        ProofLengthError,
        RootMismatch,
    ):
        assert issubclass(error, MerkleError)
        assert issubclass(error, ChorusError)
