"""Tamper-evident evidence: records, the RFC 9162 Merkle log, checkpoints, bundles, verifier.

Modules, from the bottom up (all pure and store-independent; the store feeds them bytes):

    merkle         leaf/node hashes, MerkleTree (compact range, O(log n) append and root),
                   ProofTree (inclusion and consistency proofs), RFC 9162 verifiers
    checkpoint     Ed25519 log key (init_key, load_signing_key, parse_verifier_key) and C2SP
                   signed-note checkpoints (sign_checkpoint, verify_checkpoint)
    bundle         write_bundle: the auditor's zip, streamed
    terminations   the terminations.csv table (shared by writer and verifier)
    report         the report.pdf summary
    verify         verify_bundle: offline verification naming the first failure
    zipindex       keeps zip memory flat for 200,000-entry bundles

Nothing is imported here so that ``import lifecycle.evidence.merkle`` in the hot path does not
pull in reportlab.
"""
