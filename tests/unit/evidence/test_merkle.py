"""Merkle tree tests: an independent RFC 9162 reference, published vectors, and tampering."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.evidence.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from lifecycle.exceptions import EvidenceError


class Reference:
    """RFC 9162 section 2.1 written as the RFC states it: MTH, PATH, PROOF and SUBPROOF.

    Deliberately naive (recursion on ranges, split found by doubling); memoised per range only
    so that every size up to 300 stays fast. Shares no code with the module under test.
    """

    def __init__(self, entries: list[bytes]) -> None:
        self.d = entries
        self.mth = cache(self._mth)

    @staticmethod
    def k(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.d[lo]).digest()
        k = self.k(n)
        return hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = self.k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = self.k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)


MAX_SIZE = 300
ENTRIES = [f"record {i}".encode() for i in range(MAX_SIZE)]
LEAVES = [leaf_hash(e) for e in ENTRIES]
REF = Reference(ENTRIES)


def flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def test_empty_tree_is_sha256_of_nothing() -> None:
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MerkleTree().root() == EMPTY_ROOT
    assert ProofTree([], 0).root() == EMPTY_ROOT


def test_leaf_and_node_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        root_hash([leaf_hash(b"a"), leaf_hash(b"b")])
        == hashlib.sha256(b"\x01" + leaf_hash(b"a") + leaf_hash(b"b")).digest()
    )


def test_every_size_to_300_matches_the_reference() -> None:
    """Roots, every inclusion proof and every consistency proof, for every size 1..300."""
    tree = MerkleTree()
    for n in range(1, MAX_SIZE + 1):
        tree.append(LEAVES[n - 1])
        root = REF.mth(0, n)
        assert tree.size == n
        assert tree.root() == root, n
        proofs = ProofTree(LEAVES, n)
        assert proofs.root() == root
        for m in range(n):
            path = proofs.inclusion_proof(m)
            assert path == REF.path(m, 0, n), (m, n)
            verify_inclusion(LEAVES[m], m, n, path, root)
        for m in range(n + 1):
            proof = proofs.consistency_proof(m)
            assert proof == (REF.proof(m, n) if 0 < m < n else []), (m, n)
            verify_consistency(m, n, REF.mth(0, m), root, proof)


def test_free_functions_agree_with_proof_tree() -> None:
    assert inclusion_proof(LEAVES, 5, 77) == REF.path(5, 0, 77)
    assert consistency_proof(LEAVES, 13, 77) == REF.proof(13, 77)
    assert root_hash(LEAVES, 77) == REF.mth(0, 77)


def sample(n: int) -> list[int]:
    """Every index for small trees; for larger ones a stride plus both edges (time budget)."""
    if n <= 64:
        return list(range(n))
    return sorted({0, 1, n // 2, n - 2, n - 1, *range(0, n, 13)})


@pytest.mark.parametrize("n", range(1, MAX_SIZE + 1))
def test_tampered_inclusion_proofs_are_rejected(n: int) -> None:
    root = REF.mth(0, n)
    proofs = ProofTree(LEAVES, n)
    for m in sample(n):
        path = proofs.inclusion_proof(m)
        bad: list[tuple[bytes, int, list[bytes], bytes]] = [
            (flip(LEAVES[m]), m, path, root),
            (LEAVES[m], m, path, flip(root)),
            (LEAVES[m], m, [*path, root], root),
            (LEAVES[m], m, [root, *path], root),
        ]
        bad += [
            (LEAVES[m], m, [*path[:i], flip(path[i]), *path[i + 1 :]], root)
            for i in range(len(path))
        ]
        if path:
            bad.append((LEAVES[m], m, path[:-1], root))
        if m ^ 1 < n:
            bad.append((LEAVES[m], m ^ 1, path, root))
        for leaf, index, p, r in bad:
            with pytest.raises(EvidenceError):
                verify_inclusion(leaf, index, n, p, r)


@pytest.mark.parametrize("n", range(2, MAX_SIZE + 1))
def test_tampered_consistency_proofs_are_rejected(n: int) -> None:
    new_root = REF.mth(0, n)
    proofs = ProofTree(LEAVES, n)
    for m in [m for m in sample(n) if m > 0]:
        old_root = REF.mth(0, m)
        proof = proofs.consistency_proof(m)
        bad: list[tuple[int, bytes, bytes, list[bytes]]] = [
            (m, flip(old_root), new_root, proof),
            (m, old_root, flip(new_root), proof),
            (m, new_root, old_root, proof),
            (m, old_root, new_root, []),
            (m, old_root, new_root, proof[:-1]),
            (m, old_root, new_root, [*proof, new_root]),
            (m, old_root, new_root, [old_root, *proof]),
            (m + 1, old_root, new_root, proof),
            (m - 1, old_root, new_root, proof),
        ]
        bad += [
            (m, old_root, new_root, [*proof[:i], flip(proof[i], 4), *proof[i + 1 :]])
            for i in range(len(proof))
        ]
        for size, r1, r2, p in bad:
            with pytest.raises(EvidenceError):
                verify_consistency(size, n, r1, r2, p)


def test_consistency_rejects_shrinking_and_forks() -> None:
    with pytest.raises(EvidenceError, match="never shrinks"):
        verify_consistency(5, 4, REF.mth(0, 5), REF.mth(0, 4), [])
    with pytest.raises(EvidenceError, match="forked"):
        verify_consistency(4, 4, REF.mth(0, 4), REF.mth(0, 5), [])
    with pytest.raises(EvidenceError, match="must be empty"):
        verify_consistency(0, 4, EMPTY_ROOT, REF.mth(0, 4), [EMPTY_ROOT])


def test_inclusion_rejects_out_of_range_and_short_hashes() -> None:
    with pytest.raises(EvidenceError, match="outside"):
        verify_inclusion(LEAVES[0], 3, 3, [], REF.mth(0, 3))
    with pytest.raises(EvidenceError, match="not 32"):
        verify_inclusion(LEAVES[0], 0, 2, [b"short"], REF.mth(0, 2))


def test_compact_range_survives_a_restart() -> None:
    tree = MerkleTree.from_leaf_hashes(LEAVES[:77])
    restored = MerkleTree.from_frontier(tree.size, tree.frontier)
    for h in LEAVES[77:100]:
        tree.append(h)
        restored.append(h)
    assert restored.root() == tree.root() == REF.mth(0, 100)
    with pytest.raises(EvidenceError):
        MerkleTree.from_frontier(77, tree.frontier[:1])


# The machine is shared: generation speed is not what these tests are about.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(st.binary(max_size=40), min_size=1, max_size=300),
    data=st.data(),
)
def test_random_logs_match_the_reference(entries: list[bytes], data: st.DataObject) -> None:
    ref = Reference(entries)
    leaves = [leaf_hash(e) for e in entries]
    n = len(entries)
    m = data.draw(st.integers(0, n - 1), label="index")
    old = data.draw(st.integers(0, n), label="old size")
    root = ref.mth(0, n)
    assert MerkleTree.from_leaf_hashes(leaves).root() == root
    path = inclusion_proof(leaves, m, n)
    assert path == ref.path(m, 0, n)
    verify_inclusion(leaves[m], m, n, path, root)
    proof = consistency_proof(leaves, old, n)
    assert proof == (ref.proof(old, n) if 0 < old < n else [])
    verify_consistency(old, n, ref.mth(0, old), root, proof)
    if path:
        i = data.draw(st.integers(0, len(path) - 1), label="tampered element")
        byte = data.draw(st.integers(0, 31), label="tampered byte")
        bad = bytearray(path[i])
        bad[byte] ^= 0x01
        with pytest.raises(EvidenceError):
            verify_inclusion(leaves[m], m, n, [*path[:i], bytes(bad), *path[i + 1 :]], root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="tampered element")
        bad = bytearray(proof[i])
        bad[-1] ^= 0x80
        with pytest.raises(EvidenceError):
            verify_consistency(
                old, n, ref.mth(0, old), root, [*proof[:i], bytes(bad), *proof[i + 1 :]]
            )


# Published RFC 6962 vectors, copied from transparency-dev/merkle proof/verify_test.go
# (Apache-2.0; the same vectors as certificate-transparency's merkle_tree_test.cc).
# Leaf indexes there are 1-based.
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
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
CT_INCLUSION = [
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
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
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


def test_ct_vectors_roots() -> None:
    leaves = [leaf_hash(x) for x in CT_LEAVES]
    for n, want in enumerate(CT_ROOTS, start=1):
        assert root_hash(leaves, n) == want


@pytest.mark.parametrize(("leaf", "size", "path"), CT_INCLUSION)
def test_ct_vectors_inclusion(leaf: int, size: int, path: list[str]) -> None:
    leaves = [leaf_hash(x) for x in CT_LEAVES]
    want = [bytes.fromhex(h) for h in path]
    assert inclusion_proof(leaves, leaf - 1, size) == want
    verify_inclusion(leaves[leaf - 1], leaf - 1, size, want, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY)
def test_ct_vectors_consistency(size1: int, size2: int, proof: list[str]) -> None:
    leaves = [leaf_hash(x) for x in CT_LEAVES]
    want = [bytes.fromhex(h) for h in proof]
    assert consistency_proof(leaves, size1, size2) == want
    verify_consistency(size1, size2, CT_ROOTS[size1 - 1], CT_ROOTS[size2 - 1], want)
