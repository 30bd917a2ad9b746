"""RFC 9162 section 2.1 Merkle tree: hashes, inclusion and consistency proofs.

The evidence log is an append-only sequence of records; its Merkle tree head, signed in a
checkpoint, commits to every record at once. An auditor holding a checkpoint checks one record
with an inclusion proof (O(log n) hashes) and checks that a later checkpoint extends an earlier
one with a consistency proof. Both verifiers follow the algorithms as written in RFC 9162
sections 2.1.3.2 and 2.1.4.2, so any RFC 6962/9162 tool agrees with them.

Three shapes, for three jobs:

* free functions over a sequence of leaf hashes: the plain statement of the RFC;
* ``MerkleTree``: what the appender keeps, a compact range (one hash per set bit of the size),
  so appending a record and reading the new root cost O(log n) hashes, never a rehash of the log;
* ``ProofTree``: every complete-subtree hash of one tree size in flat ``bytearray`` levels
  (about 64 bytes per leaf), built once, so a bundle of 100,000 records gets all its inclusion
  proofs in O(log n) each.

Verification raises ``EvidenceError`` naming what failed; it never returns ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lifecycle.exceptions import EvidenceError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the hash of one record's canonical bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the 0x01 prefix keeps nodes apart from leaves."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): where RFC 9162 splits."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(tree_size: int, available: int) -> None:
    if tree_size < 0:
        raise EvidenceError(f"tree size {tree_size} is negative")
    if tree_size > available:
        raise EvidenceError(f"tree size {tree_size} exceeds the {available} leaves available")


def root_hash(leaf_hashes: Sequence[bytes], tree_size: int | None = None) -> bytes:
    """MTH(D[n]) over the first ``tree_size`` leaf hashes (all of them by default)."""
    n = len(leaf_hashes) if tree_size is None else tree_size
    _check_size(n, len(leaf_hashes))
    tree = MerkleTree()
    for i in range(n):
        tree.append(leaf_hashes[i])
    return tree.root()


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int) -> list[bytes]:
    """PATH(index, D[tree_size]): the audit path, deepest sibling first (RFC 9162 2.1.3.1)."""
    return ProofTree(leaf_hashes, tree_size).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1); empty when old_size is 0 or equal."""
    return ProofTree(leaf_hashes, new_size).consistency_proof(old_size)


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``tree_size`` with head ``root``.

    RFC 9162 section 2.1.3.2, step by step. Raises ``EvidenceError`` when it does not hold.
    """
    if index < 0 or index >= tree_size:
        raise EvidenceError(f"leaf index {index} is outside a tree of size {tree_size}")
    _check_hashes(proof, "inclusion proof")
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise EvidenceError(
                f"inclusion proof for leaf {index} of tree size {tree_size} is too long"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise EvidenceError(
            f"inclusion proof for leaf {index} of tree size {tree_size} is too short"
        )
    if r != root:
        raise EvidenceError(
            f"inclusion proof for leaf {index} does not lead to the root of tree size "
            f"{tree_size}: the leaf or the proof was altered, or the proof is for another tree"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` extends the tree of ``old_size`` unchanged.

    RFC 9162 section 2.1.4.2 for 0 < old_size < new_size; the degenerate sizes the RFC leaves
    out (an empty old tree, or equal sizes) take an empty proof. Raises ``EvidenceError``.
    """
    if old_size < 0 or new_size < old_size:
        raise EvidenceError(
            f"no consistency proof can go from tree size {old_size} to {new_size}: "
            "a log never shrinks"
        )
    _check_hashes(proof, "consistency proof")
    if old_size == new_size:
        if proof:
            raise EvidenceError("consistency proof between equal tree sizes must be empty")
        if old_root != new_root:
            raise EvidenceError(
                f"two different root hashes for the same tree size {old_size}: the log forked"
            )
        return
    if old_size == 0:
        if proof:
            raise EvidenceError("consistency proof from an empty tree must be empty")
        return
    # 1. An empty path cannot prove anything for 0 < old_size < new_size.
    if not proof:
        raise EvidenceError(f"consistency proof from {old_size} to {new_size} is empty")
    path = list(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise EvidenceError(f"consistency proof from {old_size} to {new_size} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise EvidenceError(f"consistency proof from {old_size} to {new_size} is too short")
    if fr != old_root:
        raise EvidenceError(
            f"consistency proof does not reproduce the root of tree size {old_size}: "
            "the earlier checkpoint is not a prefix of this log"
        )
    if sr != new_root:
        raise EvidenceError(
            f"consistency proof does not reproduce the root of tree size {new_size}: "
            "the log was rewritten after the earlier checkpoint"
        )


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise EvidenceError(f"{what} element {i} is {len(h)} bytes, not {HASH_SIZE}")


class MerkleTree:
    """An append-only tree that keeps only its compact range (RFC 9162 tree, O(log n) state).

    ``_frontier[i]`` is the root of a complete subtree; their sizes are the set bits of
    ``size`` from the largest down, exactly the left spine of the RFC's tree. Appending merges
    equal-sized neighbours like binary addition; the root folds the frontier right to left.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._frontier: list[bytes] = []
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Sequence[bytes]) -> MerkleTree:
        tree = cls()
        for h in leaf_hashes:
            tree.append(h)
        return tree

    @classmethod
    def from_frontier(cls, size: int, frontier: Sequence[bytes]) -> MerkleTree:
        """Restore a tree saved with ``frontier`` (lets a store skip replaying every leaf)."""
        if size < 0 or len(frontier) != size.bit_count():
            raise EvidenceError(
                f"a compact range for tree size {size} has {max(size, 0).bit_count()} "
                f"hashes, not {len(frontier)}"
            )
        _check_hashes(frontier, "compact range")
        tree = cls()
        tree._frontier = list(frontier)
        tree._size = size
        return tree

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """The compact range: complete-subtree roots, largest first."""
        return tuple(self._frontier)

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash; return its index. O(log n) hashes at worst, O(1) amortised."""
        if len(leaf) != HASH_SIZE:
            raise EvidenceError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
        index = self._size
        h = leaf
        n = index
        while n & 1:
            h = node_hash(self._frontier.pop(), h)
            n >>= 1
        self._frontier.append(h)
        self._size += 1
        return index

    def root(self) -> bytes:
        """The tree head MTH(D[size]); SHA-256 of the empty string when empty."""
        if not self._frontier:
            return EMPTY_ROOT
        h = self._frontier[-1]
        for left in reversed(self._frontier[:-1]):
            h = node_hash(left, h)
        return h


class ProofTree:
    """All complete-subtree hashes of one tree size, for answering many proofs cheaply.

    Level ``k`` is one ``bytearray`` holding the hashes of the aligned complete subtrees of
    ``2**k`` leaves, 32 bytes each: about 64 bytes per leaf in total and no per-hash objects,
    so the proofs of a 100,000-record bundle cost a few megabytes.
    """

    def __init__(self, leaf_hashes: Sequence[bytes], tree_size: int) -> None:
        _check_size(tree_size, len(leaf_hashes))
        self.tree_size = tree_size
        level = bytearray()
        for i in range(tree_size):
            h = leaf_hashes[i]
            if len(h) != HASH_SIZE:
                raise EvidenceError(f"leaf hash {i} is {len(h)} bytes, not {HASH_SIZE}")
            level += h
        self._levels: list[bytearray] = [level]
        # Incomplete subtrees all end at tree_size: O(log n) of them, cached once computed.
        self._partial: dict[int, bytes] = {}
        while len(level) >= 2 * HASH_SIZE:
            nxt = bytearray()
            view = memoryview(level)
            for off in range(0, len(level) - 2 * HASH_SIZE + 1, 2 * HASH_SIZE):
                nxt += hashlib.sha256(NODE_PREFIX + view[off : off + 2 * HASH_SIZE]).digest()
            view.release()
            self._levels.append(nxt)
            level = nxt

    def _complete(self, k: int, j: int) -> bytes:
        off = j * HASH_SIZE
        return bytes(self._levels[k][off : off + HASH_SIZE])

    def subtree_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range that arises in the RFC's recursion from D[0:tree_size]."""
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            return self._complete(n.bit_length() - 1, lo // n)
        if hi == self.tree_size and lo in self._partial:
            return self._partial[lo]
        k = _split(n)
        h = node_hash(self.subtree_hash(lo, lo + k), self.subtree_hash(lo + k, hi))
        if hi == self.tree_size:
            self._partial[lo] = h
        return h

    def root(self) -> bytes:
        return self.subtree_hash(0, self.tree_size)

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(index, D[tree_size]), deepest sibling first."""
        if index < 0 or index >= self.tree_size:
            raise EvidenceError(f"leaf index {index} is outside a tree of size {self.tree_size}")
        # Walk down the RFC's split until the range holding the leaf is a complete subtree
        # (ranges reached this way are aligned to their size), collecting the siblings ...
        top: list[bytes] = []
        lo, hi = 0, self.tree_size
        while (hi - lo) & (hi - lo - 1):
            k = _split(hi - lo)
            if index < lo + k:
                top.append(self.subtree_hash(lo + k, hi))
                hi = lo + k
            else:
                top.append(self._complete(k.bit_length() - 1, lo // k))
                lo += k
        # ... then inside it the sibling at level l is simply node (index >> l) ^ 1.
        depth = (hi - lo).bit_length() - 1
        path = [self._complete(level, (index >> level) ^ 1) for level in range(depth)]
        path.extend(reversed(top))
        return path

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """PROOF(old_size, D[tree_size]) = SUBPROOF(old_size, D[tree_size], true)."""
        if old_size < 0 or old_size > self.tree_size:
            raise EvidenceError(f"old tree size {old_size} is outside 0..{self.tree_size}")
        if old_size in (0, self.tree_size):
            return []
        path: list[bytes] = []
        lo, hi, m, complete = 0, self.tree_size, old_size, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                path.append(self.subtree_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            path.append(self.subtree_hash(lo, hi))
        path.reverse()
        return path
