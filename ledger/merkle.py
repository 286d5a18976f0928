"""The RFC 9162 Merkle tree over a node's append-only log of accepted ledger entries.

Why it exists: a node keeps every entry it accepted in one append-only log and signs
tree heads (size, root) over it. With the proofs below an auditor can check that an
entry is in the log (inclusion) and that the log at a later head still starts with
the log at an earlier head (consistency), i.e. the node never rewrote history. The
hashing is Certificate Transparency's (RFC 9162 section 2.1), so any CT or
transparency-dev tool can check a chorus node's heads and proofs.

Rules of this file, in the manner of h11: pure and synchronous. No I/O, no clock, no
globals that change; bytes and integers in, bytes and typed errors out. The node layer
owns storage: this module hands it the hashes to keep and reads them back through a
callable it is given.

Theory of operation
-------------------
* Hashes (RFC 9162 2.1.1): ``leaf_hash(d) = SHA-256(0x00 || d)``,
  ``node_hash(l, r) = SHA-256(0x01 || l || r)``, the empty tree's root is
  ``SHA-256("")``; a tree of n > 1 leaves splits at k, the largest power of two
  smaller than n, so the left part is always a perfect tree and only the right edge
  is ragged.
* Addressing: ``(level, index)`` names the perfect subtree over leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.
  Such a node never changes once its last leaf exists, whatever the tree grows to,
  so one store of them answers for every past tree size as well as the current one.
* ``MerkleLog`` keeps only the frontier (the roots of the perfect subtrees that make
  up ``[0, size)``, one per set bit of size): O(log n) memory for the root. Each
  ``append`` returns the perfect-subtree nodes it completed (the leaf, plus one per
  trailing 1-bit of the leaf's index: two per leaf on average) for the caller to
  persist, e.g. an SQLite table keyed by (level, index).
* Proofs (RFC 9162 2.1.3.1 PATH and 2.1.4.1 PROOF) walk the RFC's recursion top
  down over index ranges. Every range it needs is either a perfect subtree (one read
  through ``read_node``) or a ragged range ``[x, size)`` on the right edge, whose hash
  is folded from at most log2(size) perfect subtrees, and that happens at most once per
  proof: O(log n) reads per proof, never O(n) rehashing.
* Verifiers follow RFC 9162 2.1.3.2 and 2.1.4.2 step by step (the bit-twiddling
  versions), after an O(1) check of the proof's length so a hostile proof is refused
  before any hashing. They return None and raise a ``ProofError`` subclass naming the
  reason: nothing a peer sends can make them raise anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import NamedTuple

from protocol.errors import ChorusError, DecodeError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = (1 << 64) - 1  # tree sizes and indices are uint64 in RFC 9162

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


# --- errors -------------------------------------------------------------------------


class MerkleError(ChorusError):
    """Base of everything the Merkle log refuses."""


class MalformedHash(MerkleError, DecodeError):
    """A value used as a hash that is not 32 bytes."""


class TreeRangeError(MerkleError, ValueError):
    """An index or tree size that names no leaf or no tree (index >= size, old > new...)."""


class NodeStoreError(MerkleError):
    """The node store has no hash, or no 32-byte hash, where the log needs one.

    Raised when the store and the log disagree (a node lost or never persisted, a size
    beyond what was stored): the store is broken, not the caller's request.
    """


class ProofError(MerkleError):
    """A proof that does not prove what it claims. Every verifier refusal is one.

    ``reason`` is a short, stable code (``"range"``, ``"format"``, ``"length"``,
    ``"root-mismatch"``) for metrics and peer scoring; the message names the inputs.
    """

    reason = "invalid"


class ProofRangeError(ProofError, TreeRangeError):
    """The proof claims an index or sizes that cannot exist (index >= size, old > new, 0)."""

    reason = "range"


class ProofFormatError(ProofError, MalformedHash):
    """A proof element, root or leaf hash that is not 32 bytes, or a proof that is no list."""

    reason = "format"


class ProofLengthError(ProofError):
    """A proof with more or fewer hashes than its index and sizes call for."""

    reason = "length"


class RootMismatch(ProofError):
    """The proof is well formed but leads to a different root than the one claimed."""

    reason = "root-mismatch"


# --- hashing --------------------------------------------------------------------------


def _as_hash(value: object, what: str, error: type[MalformedHash] = MalformedHash) -> bytes:
    """`value` as 32 immutable bytes, or `error` naming `what` it was meant to be."""
    if type(value) is bytes and len(value) == HASH_SIZE:
        return value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise error(f"{what} must be {HASH_SIZE} bytes, got {type(value).__name__}")
    if isinstance(value, memoryview):
        value = value.tobytes()
    if len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")
    return bytes(value)


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data).

    The 0x00 prefix (0x01 for interior nodes) is what stops a leaf from being passed
    off as an interior node (second-preimage attacks on the tree).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"leaf data must be bytes, got {type(data).__name__}")
    digest = _sha256(_LEAF_PREFIX)
    digest.update(data)
    return digest.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    left = _as_hash(left, "left child hash")
    right = _as_hash(right, "right child hash")
    return _sha256(_NODE_PREFIX + left + right).digest()


def _node(left: bytes, right: bytes) -> bytes:
    """node_hash without the checks, for hashes this module already vetted."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Root of a range from its perfect subtrees, largest (leftmost) first.

    The RFC splits a ragged range into a perfect left part and the rest, so the rest
    nests to the right: node(p0, node(p1, ... node(p_{k-2}, p_{k-1}))).
    """
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _node(left, result)
    return result


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH over a whole list of leaf hashes (EMPTY_ROOT for none), in O(log n) memory."""
    log = MerkleLog()
    for position, value in enumerate(leaf_hashes):
        log.append(_as_hash(value, f"leaf hash {position}"))
    return log.root()


# --- sizes and indices ----------------------------------------------------------------


def _check_int(value: object, what: str, error: type[TreeRangeError]) -> int:
    # bool is an int to Python but never a meaningful size or index here.
    if type(value) is not int:
        raise error(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise error(f"{what} {value} is outside 0..2**64-1")
    return value


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in PATH(index, D[size]) for 0 <= index < size.

    Below the level where the paths to `index` and to the last leaf part (`inner`
    levels), every level contributes a sibling; above it only the levels where `index`
    is a right child do, since the right edge has no right sibling there.
    """
    if not 0 <= index < size:
        raise TreeRangeError(f"leaf index {index} is not in a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """Number of hashes in PROOF(old_size, D[new_size]) for 0 < old_size <= new_size.

    It is the inclusion path of the old tree's last leaf, minus the levels inside the
    old tree's last perfect subtree, plus that subtree's own hash unless it is the
    whole old tree (old_size a power of two), which the verifier already holds.
    """
    if not 0 < old_size <= new_size:
        raise TreeRangeError(f"no consistency proof from tree size {old_size} to {new_size}")
    if old_size == new_size:
        return 0
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


# --- the node store -------------------------------------------------------------------


class Node(NamedTuple):
    """A perfect subtree's hash: leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int
    hash: bytes


# Node((level, index, hash)) without NamedTuple's Python-level __new__: append makes
# two per leaf, and this is what most of an append costs after the hashing.
_new_node: Callable[[tuple[int, int, bytes]], Node] = partial(tuple.__new__, Node)


NodeReader = Callable[[int, int], bytes]
"""`read_node(level, index)` returns the 32-byte hash of that perfect subtree.

It may raise LookupError or return None for a node it lacks; the log turns either
into NodeStoreError naming the node.
"""


def _read(read_node: NodeReader, level: int, index: int) -> bytes:
    try:
        value = read_node(level, index)
    except LookupError as error:
        raise NodeStoreError(
            f"node store has no hash for (level {level}, index {index})"
        ) from error
    if type(value) is bytes and len(value) == HASH_SIZE:
        return value
    if value is None:
        raise NodeStoreError(f"node store has no hash for (level {level}, index {index})")
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != HASH_SIZE:
        raise NodeStoreError(
            f"node store returned a value that is not a {HASH_SIZE}-byte hash "
            f"for (level {level}, index {index})"
        )
    return bytes(value)


class MemoryNodeStore:
    """Perfect-subtree hashes in memory, one bytearray per level, 32 bytes a node.

    For offline audits (rebuild a node's log from its entries, then ask it for proofs),
    tests and benchmarks: about 64 bytes per leaf, 64 MB for 10**6 leaves. A node
    persists the same `Node`s in its database instead.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = []

    def add(self, nodes: Iterable[Node]) -> None:
        """Store nodes as `MerkleLog.append` returns them: in order, each level gap-free."""
        for level, index, value in nodes:
            if type(level) is not int or type(index) is not int or level < 0:
                raise NodeStoreError(f"no such node (level {level!r}, index {index!r})")
            value = _as_hash(value, f"hash of node (level {level}, index {index})")
            while len(self._levels) <= level:
                self._levels.append(bytearray())
            row = self._levels[level]
            count = len(row) // HASH_SIZE
            if index == count:
                row += value
            elif 0 <= index < count:
                if row[index * HASH_SIZE : (index + 1) * HASH_SIZE] != value:
                    raise NodeStoreError(
                        f"node (level {level}, index {index}) already stored with another hash"
                    )
            else:
                raise NodeStoreError(
                    f"node (level {level}, index {index}) would leave a gap after {count} nodes"
                )

    def __call__(self, level: int, index: int) -> bytes:
        """The hash of node (level, index); NodeStoreError if it was never stored."""
        if 0 <= level < len(self._levels):
            row = self._levels[level]
            start = index * HASH_SIZE
            if 0 <= start < len(row):
                return bytes(row[start : start + HASH_SIZE])
        raise NodeStoreError(f"no node (level {level}, index {index}) in the memory store")

    def __len__(self) -> int:
        return sum(len(row) for row in self._levels) // HASH_SIZE


# --- proofs from stored nodes ----------------------------------------------------------


def _range_hash(read_node: NodeReader, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces.

    `start` is aligned to a power of two at least end - start, so the range is a run of
    perfect aligned subtrees, largest first: one read if it is perfect, at most
    log2(end - start) + 1 reads if it is the ragged right edge.
    """
    parts = []
    while start < end:
        width = 1 << ((end - start).bit_length() - 1)
        level = width.bit_length() - 1
        parts.append(_read(read_node, level, start >> level))
        start += width
    return _fold(parts)


def root_at(size: int, read_node: NodeReader) -> bytes:
    """MTH(D[size]) of any past or present tree size, from stored nodes (popcount reads)."""
    size = _check_int(size, "tree size", TreeRangeError)
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(read_node, 0, size)


def inclusion_proof(index: int, size: int, read_node: NodeReader) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, leaf side first, from stored nodes."""
    index = _check_int(index, "leaf index", TreeRangeError)
    size = _check_int(size, "tree size", TreeRangeError)
    if index >= size:
        raise TreeRangeError(f"leaf index {index} is not in a tree of size {size}")
    # Walk PATH's recursion from the root down: [start, end) always holds `index`;
    # each step records the sibling range's hash, so the list comes out root side first.
    path = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            path.append(_range_hash(read_node, middle, end))  # may be the ragged edge
            end = middle
        else:
            path.append(_range_hash(read_node, start, middle))  # always perfect
            start = middle
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, read_node: NodeReader) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 2.1.4.1, from stored nodes.

    Defined for 0 < old_size <= new_size (the proof between equal sizes is empty). From
    the empty tree there is nothing to prove and RFC 9162 defines no proof: refused.
    """
    old_size = _check_int(old_size, "old tree size", TreeRangeError)
    new_size = _check_int(new_size, "new tree size", TreeRangeError)
    if old_size > new_size:
        raise TreeRangeError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        raise TreeRangeError("no consistency proof from the empty tree (old tree size 0)")
    # SUBPROOF(m, D[start:end], whole) walked from the top: `m` is the old size relative
    # to `start`; `whole` is the RFC's b, true while the range still starts at leaf 0
    # of a subtree whose old root the verifier holds.
    proof = []
    start, end, m, whole = 0, new_size, old_size, True
    while m != end - start:
        middle = start + _split(end - start)
        if m <= middle - start:
            proof.append(_range_hash(read_node, middle, end))
            end = middle
        else:
            proof.append(_range_hash(read_node, start, middle))
            m -= middle - start
            start = middle
            whole = False
    if not whole:
        proof.append(_range_hash(read_node, start, end))
    proof.reverse()
    return proof


# --- the incremental log ---------------------------------------------------------------


class MerkleLog:
    """An append-only RFC 9162 tree: O(log n) state, new nodes handed back to be stored.

    The frontier holds, for each set bit of `size` from the highest, the root of the
    perfect subtree that bit stands for. Proofs read older nodes through `read_node`,
    the store the caller fills with what `append` returns.
    """

    __slots__ = ("_frontier", "_read_node", "_size")

    def __init__(self, read_node: NodeReader | None = None) -> None:
        self._size = 0
        self._frontier: list[bytes] = []
        self._read_node = read_node

    @classmethod
    def resume(cls, size: int, read_node: NodeReader) -> MerkleLog:
        """The log of `size` leaves whose nodes are in the store: popcount(size) reads.

        For a node restarting: the store is the durable state, this is the cache.
        """
        size = _check_int(size, "tree size", TreeRangeError)
        log = cls(read_node)
        start = 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                log._frontier.append(_read(read_node, level, start >> level))
                start += 1 << level
        log._size = size
        return log

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def append(self, leaf: bytes) -> list[Node]:
        """Add the next leaf hash; return the nodes it completes, leaf first.

        The leaf goes in at index `size`; every trailing 1-bit of that index closes a
        perfect subtree one level up, merged from the frontier. Two nodes per leaf on
        average, all of them final: store them before acknowledging the entry.
        """
        index = self._size
        value = leaf
        if type(value) is not bytes or len(value) != HASH_SIZE:
            value = _as_hash(value, f"leaf hash {index}")
        frontier = self._frontier
        nodes = [_new_node((0, index, value))]
        level = 0
        while index & 1:
            value = _sha256(_NODE_PREFIX + frontier.pop() + value).digest()
            level += 1
            index >>= 1
            nodes.append(_new_node((level, index, value)))
        frontier.append(value)
        self._size += 1
        return nodes

    def root(self) -> bytes:
        """MTH of the whole log now (EMPTY_ROOT when empty): O(log n) hashes."""
        if not self._frontier:
            return EMPTY_ROOT
        return _fold(self._frontier)

    def frontier(self) -> list[Node]:
        """The perfect subtrees that make up the tree now, largest first (a compact range)."""
        nodes = []
        start = 0
        frontier = iter(self._frontier)
        for level in reversed(range(self._size.bit_length())):
            if self._size >> level & 1:
                nodes.append(Node(level, start >> level, next(frontier)))
                start += 1 << level
        return nodes

    def _reader(self) -> NodeReader:
        if self._read_node is None:
            raise NodeStoreError("this log was built without a node store: it can give no proofs")
        return self._read_node

    def _check_size(self, size: int | None, what: str) -> int:
        if size is None:
            return self._size
        size = _check_int(size, what, TreeRangeError)
        if size > self._size:
            raise TreeRangeError(f"{what} {size} is beyond the log's size {self._size}")
        return size

    def root_at(self, size: int) -> bytes:
        """MTH of the log as it was at `size` leaves (size <= self.size)."""
        size = self._check_size(size, "tree size")
        if size == self._size:
            return self.root()
        return root_at(size, self._reader())

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) for the log at `size` leaves (default: now)."""
        size = self._check_size(size, "tree size")
        return inclusion_proof(index, size, self._reader())

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) between two sizes of this log (default: now)."""
        new_size = self._check_size(new_size, "new tree size")
        return consistency_proof(old_size, new_size, self._reader())


# --- verification (RFC 9162 2.1.3.2, 2.1.4.2) ------------------------------------------


def _proof_hashes(proof: object, want: int, what: str) -> list[bytes]:
    """The proof's hashes, once it is a list of exactly `want` 32-byte hashes.

    The length is checked before anything is hashed, so a hostile proof of a million
    elements costs nothing.
    """
    if not isinstance(proof, list | tuple):
        raise ProofFormatError(f"{what}: a proof is a list of hashes, got {type(proof).__name__}")
    if len(proof) != want:
        raise ProofLengthError(f"{what} has {len(proof)} hashes, needs {want}")
    return [_as_hash(h, f"{what}: hash {i}", ProofFormatError) for i, h in enumerate(proof)]


Proof = list[bytes] | tuple[bytes, ...]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Proof, root_hash: bytes) -> None:
    """Check that `leaf` (a leaf hash) is at `index` in the tree (`size`, `root_hash`).

    Returns None when the proof holds; raises a ProofError subclass otherwise, so a
    caller that forgets to look at a result still fails closed.

    As in the RFC, the proof pins `size` only as far as the tree's shape along the
    path goes (leaf 0 of 65 leaves and of 66 have the same path): take (size, root)
    from a signed tree head, which binds the two.
    """
    index = _check_int(index, "leaf index", ProofRangeError)
    size = _check_int(size, "tree size", ProofRangeError)
    leaf = _as_hash(leaf, "leaf hash", ProofFormatError)
    root_hash = _as_hash(root_hash, "root hash", ProofFormatError)
    # 1. leaf_index >= tree_size fails (this also refuses every size-0 tree).
    if index >= size:
        raise ProofRangeError(f"leaf index {index} is not in a tree of size {size}")
    what = f"inclusion proof for leaf {index} of {size}"
    path = _proof_hashes(proof, inclusion_proof_length(index, size), what)
    # 2. fn = leaf_index, sn = tree_size - 1. 3. r = hash.
    fn, sn, r = index, size - 1, leaf
    sha256, prefix = _sha256, _NODE_PREFIX
    # 4. For each p in the inclusion path:
    for p in path:
        # a. sn == 0: more hashes than levels (unreachable after the length check).
        if sn == 0:
            raise ProofLengthError(f"{what} is too long")
        # b. fn a right child, or on the right edge with no right sibling: p is on the left.
        if fn & 1 or fn == sn:
            r = sha256(prefix + p + r).digest()
            # ii. skip the levels where the right edge has no sibling.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(prefix + r + p).digest()
        # c.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 (all levels covered) and r the root.
    if sn != 0:
        raise ProofLengthError(f"{what} is too short")
    if r != root_hash:
        raise RootMismatch(f"{what} leads to root {r.hex()}, not {root_hash.hex()}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Proof
) -> None:
    """Check that the tree (`new_size`, `new_root`) extends (`old_size`, `old_root`).

    RFC 9162 2.1.4.2 covers 0 < old_size < new_size. Equal sizes are consistent when
    the roots are equal and the proof is empty (PROOF(m, D[m]) = {}). Old size 0 is
    refused: the empty tree is a prefix of every tree and the RFC defines no proof.
    Returns None when the proof holds; raises a ProofError subclass otherwise.
    """
    old_size = _check_int(old_size, "old tree size", ProofRangeError)
    new_size = _check_int(new_size, "new tree size", ProofRangeError)
    old_root = _as_hash(old_root, "old root hash", ProofFormatError)
    new_root = _as_hash(new_root, "new root hash", ProofFormatError)
    if old_size > new_size:
        raise ProofRangeError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        raise ProofRangeError("no consistency proof from the empty tree (old tree size 0)")
    what = f"consistency proof from {old_size} to {new_size}"
    path = _proof_hashes(proof, consistency_proof_length(old_size, new_size), what)
    if old_size == new_size:
        if old_root != new_root:
            raise RootMismatch(
                f"two different roots for tree size {old_size}: "
                f"{old_root.hex()} and {new_root.hex()}"
            )
        return
    # 1. An empty path fails (the length check above already refused it).
    if not path:
        raise ProofLengthError(f"{what} is empty")
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    sha256, prefix = _sha256, _NODE_PREFIX
    # 4. Shift out the levels inside the old tree's last perfect subtree.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        # a.
        if sn == 0:
            raise ProofLengthError(f"{what} is too long")
        # b. c is a left sibling: it is in both trees.
        if fn & 1 or fn == sn:
            fr = sha256(prefix + c + fr).digest()
            sr = sha256(prefix + c + sr).digest()
            # iii.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        # Otherwise c is a right sibling: it is only in the new tree.
        else:
            sr = sha256(prefix + sr + c).digest()
        # c.
        fn >>= 1
        sn >>= 1
    # 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise ProofLengthError(f"{what} is too short")
    if fr != old_root:
        raise RootMismatch(f"{what} leads to old root {fr.hex()}, not {old_root.hex()}")
    if sr != new_root:
        raise RootMismatch(f"{what} leads to new root {sr.hex()}, not {new_root.hex()}")
