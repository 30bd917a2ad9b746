"""After `lifecycle keys init --force` the log is the same but the key is new: the checkpoint
handed out (by the signer and in a bundle) must be signed by the new key at once, not only
once the log grows, while the stored checkpoint of the old key stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.evidence.checkpoint import init_key, load_signing_key, verify_checkpoint
from lifecycle.evidence.export import export_bundle
from lifecycle.evidence.log import EvidenceLog
from lifecycle.evidence.verify import verify_bundle
from lifecycle.exceptions import EvidenceError
from tests.unit.engine.harness import ORIGIN, Harness, memory_systems

pytestmark = pytest.mark.anyio


async def test_a_rotated_key_signs_the_unchanged_log_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, memory_systems())
    await h.terminate("W0001")
    old = await h.evidence.sign()
    assert old is not None
    old_verifier = h.verifier

    new_verifier = init_key(tmp_path / "key", ORIGIN, overwrite=True)
    new_key = load_signing_key(tmp_path / "key", ORIGIN)
    signer = EvidenceLog(h.store, new_key, ORIGIN, sla_seconds=3600, clock=h.clock)

    fresh = await signer.sign()
    assert fresh is not None
    assert fresh.tree_size == old.tree_size
    assert verify_checkpoint(fresh.note, new_verifier).tree_size == old.tree_size
    with pytest.raises(EvidenceError, match="Wrong key"):
        verify_checkpoint(fresh.note, old_verifier)

    bundle = tmp_path / "bundle.zip"
    export_bundle(h.store, new_key, ORIGIN, bundle, now=h.clock())
    report = verify_bundle(bundle, new_verifier.text())
    assert report.tree_size == old.tree_size
    assert report.records == 1
    # The old key's checkpoint stays in the append-only table.
    stored = h.store.latest_checkpoint()
    assert stored is not None
    assert verify_checkpoint(stored.note, old_verifier).tree_size == old.tree_size
