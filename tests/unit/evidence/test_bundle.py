"""Bundle round trip, and one test per way an auditor's evidence can be tampered with."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lifecycle.evidence.bundle import key_file_name, manifest_note_text, write_bundle
from lifecycle.evidence.checkpoint import SigningKey, sign_checkpoint, verify_checkpoint
from lifecycle.evidence.merkle import MerkleTree
from lifecycle.evidence.verify import verify_bundle
from lifecycle.exceptions import EvidenceError

from .conftest import ORIGIN, Log, make_record

ALL = {"since": None, "until": None, "worker": None}


def export(
    log: Log,
    path: Path,
    *,
    items: list[tuple[int, bytes]] | None = None,
    query: dict[str, str | None] | None = None,
    key: SigningKey | None = None,
    checkpoint: str | None = None,
    previous_tree_size: int | None = None,
) -> Path:
    write_bundle(
        path,
        records=items if items is not None else log.items(),
        leaf_hashes=log.leaves,
        checkpoint=checkpoint or log.checkpoint(),
        signing_key=key or log.key,
        query=query or ALL,
        generator_version="0.1.0",
        previous_tree_size=previous_tree_size,
    )
    return path


def rezip(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Rewrite a bundle with ``edit`` applied to its name -> bytes map, keeping entry order."""
    with zipfile.ZipFile(src) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    edit(files)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return dst


def verifier(log: Log) -> str:
    return log.key.verifier.text()


def test_round_trip(log: Log, tmp_path: Path) -> None:
    path = export(log, tmp_path / "b.zip")
    report = verify_bundle(path, verifier(log))
    assert (report.origin, report.tree_size, report.records) == (ORIGIN, 12, 12)
    assert report.full_log and report.seq_ranges == [[0, 11]]
    assert report.root_hash == log.tree.root()
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {
            "checkpoint",
            "manifest.json",
            "manifest.sig",
            "terminations.csv",
            "report.pdf",
            key_file_name(log.key.verifier),
        } <= names
        assert all(f"records/{s}.json" in names and f"proofs/{s}.json" in names for s in range(12))
        assert zf.read("records/3.json") == log.records[3]
        assert zf.read("report.pdf").startswith(b"%PDF-")
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["query"] == ALL
        assert manifest["generator"] == {"name": "lifecycle", "version": "0.1.0"}
        assert set(manifest["files"]) == names - {"manifest.json", "manifest.sig"}
        proof = json.loads(zf.read("proofs/5.json"))
        assert proof["leaf_index"] == 5 and proof["tree_size"] == 12
        assert isinstance(proof["audit_path"], list) and len(proof["audit_path"]) == 4


def test_terminations_csv_has_one_row_per_termination(log: Log, tmp_path: Path) -> None:
    path = export(log, tmp_path / "b.zip")
    with zipfile.ZipFile(path) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("terminations.csv").decode())))
    assert len(rows) == 11  # seq 9 is a policy record, not a termination
    assert [r["seq"] for r in rows] == [str(s) for s in range(12) if s != 9]
    for system in ("idp", "ehr", "phone"):
        assert f"{system}_disabled_at" in rows[0] and f"{system}_verified_at" in rows[0]
    first = rows[0]
    record = json.loads(log.records[0])
    assert first["worker_id"] == record["subject"]["worker_id"]
    assert first["hr_received_at"] == record["trigger"]["received_at"]
    disable = [a for a in record["actions"] if a["system"] == "ehr" and a["op"] == "disable"]
    assert first["ehr_disabled_at"] == disable[0]["completed_at"]
    assert first["time_to_revoke_ms"] == "30000" and first["sla_met"] == "true"
    late = next(r for r in rows if r["seq"] == "4")
    assert late["sla_met"] == "false"
    unrevoked = next(r for r in rows if r["seq"] == "7")
    assert unrevoked["time_to_revoke_ms"] == "" and unrevoked["status"] == "incomplete"


def test_systems_union_covers_workers_with_different_systems(
    signing_key: SigningKey, tmp_path: Path
) -> None:
    log = Log(signing_key)
    log.append(make_record(0, systems=("idp",)))
    log.append(make_record(1, systems=("ehr", "phone")))
    with zipfile.ZipFile(export(log, tmp_path / "b.zip")) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("terminations.csv").decode())))
    assert rows[0]["idp_disabled_at"] and not rows[0]["phone_disabled_at"]
    assert rows[1]["phone_disabled_at"] and not rows[1]["idp_disabled_at"]
    verify_bundle(tmp_path / "b.zip", verifier(log))


def test_filtered_export_verifies_and_is_not_a_gap(log: Log, tmp_path: Path) -> None:
    seqs = [1, 2, 6, 11]
    path = export(
        log,
        tmp_path / "b.zip",
        items=list(log.items(seqs)),
        query={"since": None, "until": None, "worker": "W0002"},
    )
    report = verify_bundle(path, verifier(log))
    assert report.records == 4 and not report.full_log
    assert report.seq_ranges == [[1, 2], [6, 6], [11, 11]]


def test_empty_log_exports_and_verifies(signing_key: SigningKey, tmp_path: Path) -> None:
    log = Log(signing_key)
    report = verify_bundle(export(log, tmp_path / "b.zip"), verifier(log))
    assert report.records == 0 and report.tree_size == 0


def test_consistency_with_an_earlier_checkpoint(log: Log, tmp_path: Path) -> None:
    old = sign_checkpoint(log.key, ORIGIN, 8, MerkleTree.from_leaf_hashes(log.leaves[:8]).root())
    path = export(log, tmp_path / "b.zip", previous_tree_size=8)
    report = verify_bundle(path, verifier(log), previous_checkpoint=old)
    assert report.previous_tree_size == 8


def test_a_rewritten_history_fails_consistency(log: Log, tmp_path: Path) -> None:
    forked = MerkleTree.from_leaf_hashes(
        [*log.leaves[:5], log.leaves[6], log.leaves[5], log.leaves[7]]
    )
    old = sign_checkpoint(log.key, ORIGIN, 8, forked.root())
    path = export(log, tmp_path / "b.zip", previous_tree_size=8)
    with pytest.raises(EvidenceError, match="not consistent with the previous checkpoint"):
        verify_bundle(path, verifier(log), previous_checkpoint=old)


def test_consistency_proof_missing(log: Log, tmp_path: Path) -> None:
    old = sign_checkpoint(log.key, ORIGIN, 8, MerkleTree.from_leaf_hashes(log.leaves[:8]).root())
    with pytest.raises(EvidenceError, match=r"consistency proof .*missing"):
        verify_bundle(export(log, tmp_path / "b.zip"), verifier(log), previous_checkpoint=old)


# ---- tampering: one test per case, each asserting the message names the problem -------------


def test_changed_byte_in_a_record(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files["records/3.json"] = files["records/3.json"].replace(b"Acme", b"Acne")

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"record seq 3 \(records/3.json\) was altered"):
        verify_bundle(bad, verifier(log))


def test_record_altered_in_the_database_before_export(log: Log, tmp_path: Path) -> None:
    """An insider edits a stored record and exports: hashes agree, the Merkle proof does not."""
    record = json.loads(log.records[3])
    record["computed"]["time_to_revoke_ms"] = 1000
    items = list(log.items())
    items[3] = (3, rfc8785.dumps(record))
    bad = export(log, tmp_path / "b.zip", items=items)
    with pytest.raises(EvidenceError, match=r"record seq 3 .* is not in the log the checkpoint"):
        verify_bundle(bad, verifier(log))


def test_record_re_encoded_is_not_canonical(log: Log, tmp_path: Path) -> None:
    items = list(log.items())
    items[2] = (2, json.dumps(json.loads(log.records[2]), indent=2).encode())
    bad = export(log, tmp_path / "b.zip", items=items)
    with pytest.raises(EvidenceError, match=r"record seq 2 .* not canonical JSON"):
        verify_bundle(bad, verifier(log))


def test_removed_record_is_a_sequence_gap(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        del files["records/5.json"], files["proofs/5.json"]

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match="sequence gap: record seq 5"):
        verify_bundle(bad, verifier(log))


def test_record_left_out_of_a_whole_log_export(log: Log, tmp_path: Path) -> None:
    items = [item for item in log.items() if item[0] != 5]
    bad = export(log, tmp_path / "b.zip", items=items)
    with pytest.raises(EvidenceError, match=r"sequence gap: seqs 5\.\.5 are missing"):
        verify_bundle(bad, verifier(log))


def test_record_removed_from_a_filtered_export(log: Log, tmp_path: Path) -> None:
    path = export(
        log,
        tmp_path / "b.zip",
        items=list(log.items([1, 6, 11])),
        query={"since": None, "until": None, "worker": "W0002"},
    )

    def edit(files: dict[str, bytes]) -> None:
        del files["records/6.json"], files["proofs/6.json"]

    with pytest.raises(EvidenceError, match="sequence gap: record seq 6"):
        verify_bundle(rezip(path, tmp_path / "t.zip", edit), verifier(log))


def test_newest_records_left_out_of_a_whole_log_export(log: Log, tmp_path: Path) -> None:
    bad = export(log, tmp_path / "b.zip", items=list(log.items(range(10))))
    with pytest.raises(EvidenceError, match=r"sequence gap: seqs 10\.\.11"):
        verify_bundle(bad, verifier(log))


def test_swapped_record_files_are_reordered(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        for kind in ("records", "proofs"):
            a, b = f"{kind}/3.json", f"{kind}/4.json"
            files[a], files[b] = files[b], files[a]

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"reordered: records/3.json holds the record with"):
        verify_bundle(bad, verifier(log))


def test_records_exported_out_of_order(log: Log, tmp_path: Path) -> None:
    items = list(log.items())
    items[3], items[4] = items[4], items[3]
    bad = export(log, tmp_path / "b.zip", items=items)
    with pytest.raises(EvidenceError, match="reordered: seq 3 comes after seq 4"):
        verify_bundle(bad, verifier(log))


def test_wrong_key_is_rejected(log: Log, tmp_path: Path) -> None:
    path = export(log, tmp_path / "b.zip")
    other = SigningKey(ORIGIN, Ed25519PrivateKey.generate()).verifier.text()
    with pytest.raises(EvidenceError, match="checkpoint rejected: not signed by the trusted key"):
        verify_bundle(path, other)


def test_swapped_key_and_re_signed_bundle_is_rejected(log: Log, tmp_path: Path) -> None:
    """An attacker re-signs everything with their own key of the same name and ships it."""
    mallory = SigningKey(ORIGIN, Ed25519PrivateKey.generate())
    items = list(log.items())
    record = json.loads(log.records[0])
    record["status"] = "verified"
    forged = Log(mallory)
    for _, data in items:
        forged.append(json.loads(data))
    path = export(forged, tmp_path / "b.zip", key=mallory)
    verify_bundle(path, mallory.verifier.text())  # self-consistent under the wrong key
    with pytest.raises(EvidenceError, match="checkpoint rejected: not signed by the trusted key"):
        verify_bundle(path, verifier(log))


def test_bundled_key_file_swapped(log: Log, tmp_path: Path) -> None:
    mallory = SigningKey(ORIGIN, Ed25519PrivateKey.generate()).verifier.text()

    def edit(files: dict[str, bytes]) -> None:
        files[key_file_name(log.key.verifier)] = (mallory + "\n").encode()

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"manifest hash mismatch: keys/"):
        verify_bundle(bad, verifier(log))


def test_altered_checkpoint_is_rejected(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files["checkpoint"] = files["checkpoint"].replace(b"\n12\n", b"\n11\n")

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match="checkpoint rejected: bad signature"):
        verify_bundle(bad, verifier(log))


def test_forged_checkpoint_signature_is_rejected(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        text = files["checkpoint"].decode()
        head, _, sig = text.rpartition(" ")
        files["checkpoint"] = f"{head} {'A' * 86}==\n".encode()
        assert sig != "A"

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match="checkpoint rejected"):
        verify_bundle(bad, verifier(log))


def test_proof_for_another_tree_size(log: Log, tmp_path: Path) -> None:
    older = Log(log.key)
    for data in log.records[:11]:
        older.append(json.loads(data))
    old_bundle = export(older, tmp_path / "old.zip")
    with zipfile.ZipFile(old_bundle) as zf:
        old_proof = zf.read("proofs/5.json")

    def edit(files: dict[str, bytes]) -> None:
        files["proofs/5.json"] = old_proof

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(
        EvidenceError,
        match=r"proofs/5\.json is a proof for tree size 11, but the checkpoint signs tree size 12",
    ):
        verify_bundle(bad, verifier(log))


def test_checkpoint_swapped_for_an_older_one(log: Log, tmp_path: Path) -> None:
    older = sign_checkpoint(
        log.key, ORIGIN, 11, MerkleTree.from_leaf_hashes(log.leaves[:11]).root()
    )

    def edit(files: dict[str, bytes]) -> None:
        files["checkpoint"] = older.encode()

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(
        EvidenceError, match="checkpoint has tree size 11: the checkpoint was swapped"
    ):
        verify_bundle(bad, verifier(log))


def test_manifest_hash_mismatch(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files["terminations.csv"] = files["terminations.csv"].replace(b"false", b"true")

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"manifest hash mismatch: terminations\.csv"):
        verify_bundle(bad, verifier(log))


def test_manifest_edited_after_signing(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files["manifest.json"] = files["manifest.json"].replace(
            b'"worker": null', b'"worker": "W0001"'
        )

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"manifest\.json was altered after it was signed"):
        verify_bundle(bad, verifier(log))


def test_manifest_signature_missing(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        del files["manifest.sig"]

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"manifest.sig is missing"):
        verify_bundle(bad, verifier(log))


def test_manifest_signature_note_is_not_a_checkpoint(log: Log) -> None:
    note = log.key.sign_note(manifest_note_text(ORIGIN, "0" * 64))
    with pytest.raises(EvidenceError, match="not decimal"):
        verify_checkpoint(note, log.key.verifier)


def test_unlisted_file_is_rejected(log: Log, tmp_path: Path) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files["records/99.json"] = log.records[0]

    bad = rezip(export(log, tmp_path / "b.zip"), tmp_path / "t.zip", edit)
    with pytest.raises(EvidenceError, match=r"records/99.json is in the bundle but not in the"):
        verify_bundle(bad, verifier(log))


def test_not_a_zip(tmp_path: Path, log: Log) -> None:
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(EvidenceError, match="not a readable zip"):
        verify_bundle(tmp_path / "x.zip", verifier(log))


def test_writer_refuses_records_beyond_the_checkpoint(log: Log, tmp_path: Path) -> None:
    old = sign_checkpoint(log.key, ORIGIN, 8, MerkleTree.from_leaf_hashes(log.leaves[:8]).root())
    with pytest.raises(EvidenceError, match="sign a new checkpoint"):
        export(log, tmp_path / "b.zip", checkpoint=old)


def test_writer_accepts_a_file_object(log: Log) -> None:
    buf = io.BytesIO()
    write_bundle(
        buf,
        records=log.items(),
        leaf_hashes=log.leaves,
        checkpoint=log.checkpoint(),
        signing_key=log.key,
        query=ALL,
        generator_version="0.1.0",
    )
    buf.seek(0)
    assert verify_bundle(buf, verifier(log)).records == 12


class _Unseekable(io.RawIOBase):
    """An HTTP response body: write-only, no seek, no tell."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def test_writer_streams_to_an_unseekable_body(log: Log) -> None:
    body = _Unseekable()
    write_bundle(
        body,
        records=log.items(),
        leaf_hashes=log.leaves,
        checkpoint=log.checkpoint(),
        signing_key=log.key,
        query=ALL,
        generator_version="0.1.0",
    )
    assert verify_bundle(io.BytesIO(bytes(body.data)), verifier(log)).records == 12


def test_duplicate_seq_is_refused(log: Log, tmp_path: Path) -> None:
    items = [*log.items(range(4)), (2, log.records[2])]
    with pytest.raises(EvidenceError, match="seq 2 twice"):
        export(log, tmp_path / "b.zip", items=items)


def test_progress_is_reported_and_report_serialises(log: Log, tmp_path: Path) -> None:
    written: list[int] = []
    write_bundle(
        tmp_path / "b.zip",
        records=log.items(),
        leaf_hashes=log.leaves,
        checkpoint=log.checkpoint(),
        signing_key=log.key,
        query=ALL,
        generator_version="0.1.0",
        progress=written.append,
    )
    checked: list[tuple[int, int]] = []
    report = verify_bundle(
        tmp_path / "b.zip",
        verifier(log),
        progress=lambda done, total: checked.append((done, total)),
    )
    assert written == [12] and checked == [(12, 12)]
    out = json.loads(json.dumps(report.as_dict()))
    assert out["ok"] is True and out["tree_size"] == 12 and len(out["checks"]) >= 5


def test_previous_checkpoint_by_another_key_is_rejected(log: Log, tmp_path: Path) -> None:
    other = SigningKey(ORIGIN, Ed25519PrivateKey.generate())
    old = sign_checkpoint(other, ORIGIN, 8, MerkleTree.from_leaf_hashes(log.leaves[:8]).root())
    path = export(log, tmp_path / "b.zip", previous_tree_size=8)
    with pytest.raises(EvidenceError, match="previous checkpoint rejected: not signed by"):
        verify_bundle(path, verifier(log), previous_checkpoint=old)


def test_consistency_proof_for_other_sizes_is_rejected(log: Log, tmp_path: Path) -> None:
    old = sign_checkpoint(log.key, ORIGIN, 6, MerkleTree.from_leaf_hashes(log.leaves[:6]).root())
    path = export(log, tmp_path / "b.zip", previous_tree_size=8)
    with pytest.raises(
        EvidenceError, match=r"consistency.json proves 8 -> 12, but the checkpoints"
    ):
        verify_bundle(path, verifier(log), previous_checkpoint=old)


def test_a_damaged_zip_member_is_a_failed_check_not_a_crash(log: Log, tmp_path: Path) -> None:
    good = export(log, tmp_path / "b.zip")
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("terminations.csv")
    data = bytearray(good.read_bytes())
    # A byte inside the member's stored data: its CRC-32 no longer matches.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    bad = tmp_path / "damaged.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(EvidenceError, match=r"terminations.csv is damaged in the zip"):
        verify_bundle(bad, verifier(log))
