"""Offline verification of an evidence bundle with nothing but the bundle and the public key.

The checks run in the order an auditor's trust flows, and the first failure stops with an
``EvidenceError`` naming it:

1. the checkpoint is signed by the key the auditor supplied (not the one in the bundle);
2. the manifest is signed by that key and describes that checkpoint;
3. the manifest's list of matched seqs is strictly ascending (reordering) and, for an
   unfiltered export, is exactly 0..tree_size-1 (gaps anywhere in the log);
4. every non-record file matches its manifest SHA-256;
5. for each matched seq, in order: the record is present (gap), holds that seq (reordering),
   matches its manifest SHA-256 (altered), is dpe/1 canonical JSON (RFC 8785), and its proof is
   for that leaf and the checkpoint's tree size and leads to the checkpoint's root;
6. no file in the zip is missing from the manifest;
7. ``terminations.csv`` equals the table rebuilt from the verified records (the report is
   complete and accurate, not only unaltered);
8. with an earlier checkpoint, the RFC 9162 consistency proof from it to this one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import rfc8785

from lifecycle.evidence.bundle import (
    BUNDLE_FORMAT,
    PROGRESS_EVERY,
    QUERY_KEYS,
    key_file_name,
    manifest_note_text,
)
from lifecycle.evidence.checkpoint import (
    Checkpoint,
    parse_verifier_key,
    verify_checkpoint,
    verify_note,
)
from lifecycle.evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from lifecycle.evidence.terminations import TerminationsTable
from lifecycle.exceptions import EvidenceError

RECORD_SCHEMA = "dpe/1"
MAX_MEMBER_BYTES = 64 << 20
_RECORD_NAME = re.compile(r"^(records|proofs)/(0|[1-9][0-9]*)\.json$")


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification established."""

    origin: str
    tree_size: int
    root_hash: bytes
    records: int
    seq_ranges: list[list[int]]
    query: dict[str, str | None]
    generator: str
    generated_at: str
    full_log: bool
    previous_tree_size: int | None
    checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for ``lifecycle evidence verify --json``."""
        return {
            "ok": True,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "records": self.records,
            "seq_ranges": self.seq_ranges,
            "query": self.query,
            "generator": self.generator,
            "generated_at": self.generated_at,
            "full_log": self.full_log,
            "previous_tree_size": self.previous_tree_size,
            "checks": self.checks,
        }


class _Bundle:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = set(zf.namelist())

    def read(self, name: str, what: str | None = None) -> bytes:
        if name not in self.names:
            raise EvidenceError(f"{what or name} is missing from the bundle ({name})")
        info = self.zf.getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise EvidenceError(f"{name} is implausibly large ({info.file_size} bytes)")
        try:
            with self.zf.open(info) as f:
                return f.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            # A damaged member (bad CRC, broken deflate stream) is a failed check, not a crash.
            raise EvidenceError(f"{name} is damaged in the zip: {exc}") from exc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _iter_seqs(runs: list[list[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


def _parse_runs(manifest: dict[str, Any]) -> tuple[int, list[list[int]]]:
    seqs = manifest.get("seqs")
    if not isinstance(seqs, dict) or not isinstance(seqs.get("ranges"), list):
        raise EvidenceError("manifest.json has no seqs.ranges: the matched records are unknown")
    runs: list[list[int]] = []
    for run in seqs["ranges"]:
        if (
            not isinstance(run, list)
            or len(run) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in run)
            or run[0] > run[1]
        ):
            raise EvidenceError(f"manifest.json seqs.ranges entry {run!r} is malformed")
        runs.append([run[0], run[1]])
    count = sum(last - first + 1 for first, last in runs)
    if seqs.get("count") != count:
        raise EvidenceError(
            f"manifest.json says {seqs.get('count')} records but its ranges hold {count}"
        )
    return count, runs


def _check_order(runs: list[list[int]], cp: Checkpoint, full_log: bool) -> None:
    # Order first: a record moved elsewhere also leaves a hole, and "reordered" is the
    # more precise diagnosis of the two.
    previous: int | None = None
    for first, last in runs:
        if previous is not None and first <= previous:
            raise EvidenceError(
                f"records are reordered: seq {first} comes after seq {previous} in the bundle"
            )
        previous = last
    previous = None
    for first, last in runs:
        if previous is not None and full_log and first != previous + 1:
            raise EvidenceError(
                f"sequence gap: seqs {previous + 1}..{first - 1} are missing from an export of "
                "the whole log"
            )
        previous = last
    if runs and runs[-1][1] >= cp.tree_size:
        raise EvidenceError(
            f"record seq {runs[-1][1]} is beyond the checkpoint's tree size {cp.tree_size}"
        )
    if full_log:
        if not runs and cp.tree_size:
            raise EvidenceError(
                f"sequence gap: an export of the whole log holds no records but the "
                f"checkpoint has {cp.tree_size}"
            )
        if runs and runs[0][0] != 0:
            raise EvidenceError(
                f"sequence gap: seqs 0..{runs[0][0] - 1} are missing from an export of the "
                "whole log"
            )
        if runs and runs[-1][1] != cp.tree_size - 1:
            raise EvidenceError(
                f"sequence gap: seqs {runs[-1][1] + 1}..{cp.tree_size - 1} are missing from "
                f"an export of the whole log (the checkpoint has tree size {cp.tree_size})"
            )


def _decode_path(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise EvidenceError(f"{what} is not a list of base64 hashes")
    out = []
    for v in values:
        try:
            out.append(base64.b64decode(v, validate=True))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise EvidenceError(f"{what} holds a value that is not base64") from exc
    return out


def _parse_canonical(data: bytes) -> tuple[Any, bool]:
    """Parse a record and tell whether its bytes are its RFC 8785 canonical form.

    For ASCII keys, safe integers (below 2**53) and no floats, RFC 8785 output equals
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` (same escapes, same
    order), which is about twenty times faster than the ``rfc8785`` package; anything else is
    decided by the package itself.
    """
    exotic = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal exotic
        exotic = exotic or not all(k.isascii() for k, _ in items)
        return dict(items)

    def number(text: str) -> float:
        nonlocal exotic
        exotic = True
        return float(text)

    def integer(text: str) -> int | float:
        nonlocal exotic
        value = int(text)
        if abs(value) < 2**53:
            return value
        exotic = True
        return float(text)  # RFC 8785 numbers are IEEE 754 doubles

    record = json.loads(data, object_pairs_hook=pairs, parse_float=number, parse_int=integer)
    if exotic:
        try:
            return record, rfc8785.dumps(record) == data
        except rfc8785.CanonicalizationError:
            return record, False
    fast = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return record, fast.encode() == data


def _check_record(
    bundle: _Bundle, seq: int, expected: dict[str, str], cp: Checkpoint
) -> dict[str, Any]:
    name = f"records/{seq}.json"
    if name not in bundle.names:
        raise EvidenceError(
            f"sequence gap: record seq {seq} matched the query but {name} is missing"
        )
    data = bundle.read(name)
    try:
        record, canonical = _parse_canonical(data)
    except ValueError:
        record, canonical = None, False
    held = record.get("seq") if isinstance(record, dict) else None
    if isinstance(held, int) and held != seq:
        raise EvidenceError(f"records are reordered: {name} holds the record with seq {held}")
    if _sha(data) != expected.get(name):
        raise EvidenceError(
            f"record seq {seq} ({name}) was altered: its SHA-256 does not match the manifest"
        )
    if not isinstance(record, dict):
        raise EvidenceError(f"record seq {seq} ({name}) is not a JSON object")
    if record.get("schema") != RECORD_SCHEMA:
        raise EvidenceError(f"record seq {seq} ({name}) is not a {RECORD_SCHEMA} record")
    if held != seq:
        raise EvidenceError(f"record {name} has no seq field equal to {seq}")
    if not canonical:
        raise EvidenceError(
            f"record seq {seq} ({name}) is not canonical JSON (RFC 8785): it was re-encoded"
        )

    pname = f"proofs/{seq}.json"
    pdata = bundle.read(pname, f"the inclusion proof of record seq {seq}")
    try:
        proof = json.loads(pdata)
    except ValueError as exc:
        raise EvidenceError(f"{pname} is not JSON") from exc
    if not isinstance(proof, dict):
        raise EvidenceError(f"{pname} is not a JSON object")
    if proof.get("leaf_index") != seq:
        raise EvidenceError(
            f"{pname} proves leaf {proof.get('leaf_index')!r}, not record seq {seq}"
        )
    if proof.get("tree_size") != cp.tree_size:
        raise EvidenceError(
            f"{pname} is a proof for tree size {proof.get('tree_size')!r}, but the checkpoint "
            f"signs tree size {cp.tree_size}"
        )
    if _sha(pdata) != expected.get(pname):
        raise EvidenceError(f"{pname} was altered: its SHA-256 does not match the manifest")
    path = _decode_path(proof.get("audit_path"), f"{pname} audit_path")
    try:
        verify_inclusion(leaf_hash(data), seq, cp.tree_size, path, cp.root_hash)
    except EvidenceError as exc:
        raise EvidenceError(
            f"record seq {seq} ({name}) is not in the log the checkpoint signs: {exc.message}"
        ) from exc
    return record


def verify_bundle(
    bundle: str | os.PathLike[str] | IO[bytes],
    verifier_key: str,
    previous_checkpoint: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify a bundle offline; raise ``EvidenceError`` naming the first thing that fails.

    ``verifier_key`` is the C2SP verifier key text the auditor obtained out of band (the
    bundle's own copy is never trusted). ``previous_checkpoint`` is a checkpoint the auditor
    kept from an earlier audit; the bundle must then prove this log extends it.
    ``progress(done, total)`` is called every ``PROGRESS_EVERY`` records and at the end.
    """
    key = parse_verifier_key(verifier_key)
    try:
        zf = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EvidenceError(f"not a readable zip bundle: {exc}") from exc
    checks: list[str] = []
    with zf:
        b = _Bundle(zf)
        # 1. Checkpoint, with the auditor's key.
        try:
            cp_text = b.read("checkpoint").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EvidenceError("checkpoint is not UTF-8 text") from exc
        try:
            cp = verify_checkpoint(cp_text, key, origin=key.name)
        except EvidenceError as exc:
            raise EvidenceError(f"checkpoint rejected: {exc.message}") from exc
        checks.append(
            f"checkpoint signed by {key.name} ({key.key_id.hex()}), tree size {cp.tree_size}"
        )

        # 2. Manifest, signed by the same key, describing that checkpoint.
        manifest_bytes = b.read("manifest.json")
        try:
            note_text = verify_note(b.read("manifest.sig").decode("utf-8"), key)
        except (EvidenceError, UnicodeDecodeError) as exc:
            detail = exc.message if isinstance(exc, EvidenceError) else "not UTF-8"
            raise EvidenceError(f"manifest signature rejected: {detail}") from exc
        if note_text != manifest_note_text(cp.origin, _sha(manifest_bytes)):
            raise EvidenceError(
                "manifest.json was altered after it was signed: its SHA-256 is not the one "
                "manifest.sig signs"
            )
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError as exc:
            raise EvidenceError("manifest.json is not JSON") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise EvidenceError(f"manifest.json is not a {BUNDLE_FORMAT} manifest")
        log = manifest.get("log") or {}
        root_b64 = base64.b64encode(cp.root_hash).decode()
        if log.get("tree_size") != cp.tree_size or log.get("root_hash") != root_b64:
            raise EvidenceError(
                f"manifest describes tree size {log.get('tree_size')!r}, but the checkpoint "
                f"has tree size {cp.tree_size}: the checkpoint was swapped"
            )
        expected = manifest.get("files")
        if not isinstance(expected, dict):
            raise EvidenceError("manifest.json has no files table")
        raw_query = manifest.get("query") or {}
        query = {k: raw_query.get(k) for k in QUERY_KEYS}
        full_log = all(v is None for v in query.values())
        checks.append("manifest signed and describes the checkpoint")

        # 3. The matched seqs: order, and completeness for a whole-log export.
        count, runs = _parse_runs(manifest)
        _check_order(runs, cp, full_log)
        checks.append(
            f"{count} records in ascending seq order"
            + (", no gaps in the whole log" if full_log else " (filtered export)")
        )

        # 4. Every non-record file against the manifest.
        for name in ("checkpoint", key_file_name(key), "terminations.csv", "report.pdf"):
            if name not in expected:
                raise EvidenceError(f"manifest hash missing: the manifest does not list {name}")
        for name, digest in expected.items():
            if _RECORD_NAME.match(name):
                continue
            data = b.read(name, f"{name} (listed in the manifest)")
            if _sha(data) != digest:
                raise EvidenceError(
                    f"manifest hash mismatch: {name} has SHA-256 {_sha(data)}, the manifest "
                    f"says {digest}"
                )
        bundled_key = b.read(key_file_name(key)).decode("utf-8", "replace").strip()
        if bundled_key != key.text():
            raise EvidenceError(f"{key_file_name(key)} in the bundle is not the key you supplied")
        checks.append("every other file matches its manifest SHA-256")

        # 5. Every record, in order.
        with TerminationsTable() as table:
            for done, seq in enumerate(_iter_seqs(runs), start=1):
                record = _check_record(b, seq, expected, cp)
                table.add(seq, record)
                if progress is not None and (done % PROGRESS_EVERY == 0 or done == count):
                    progress(done, count)
            checks.append(f"{count} records canonical and included in the checkpoint's tree")

            # 6. Nothing unlisted.
            for name in sorted(b.names):
                if name not in expected and name not in ("manifest.json", "manifest.sig"):
                    raise EvidenceError(f"{name} is in the bundle but not in the manifest")
            listed = sum(1 for n in expected if n.startswith("records/"))
            if listed != count:
                raise EvidenceError(
                    f"the manifest lists {listed} record files but its seqs hold {count}"
                )

            # 7. The report table is exactly what the records say.
            csv_hash = hashlib.sha256()
            for chunk in table.iter_csv():
                csv_hash.update(chunk)
            if csv_hash.hexdigest() != expected["terminations.csv"]:
                raise EvidenceError(
                    "terminations.csv does not match the signed records it summarises"
                )
            checks.append(f"terminations.csv rebuilt from the records ({table.rows} rows)")

        # 8. Consistency with the auditor's earlier checkpoint.
        previous_size: int | None = None
        if previous_checkpoint is not None:
            try:
                prev = verify_checkpoint(previous_checkpoint, key, origin=key.name)
            except EvidenceError as exc:
                raise EvidenceError(f"previous checkpoint rejected: {exc.message}") from exc
            cdata = b.read(
                "consistency.json",
                "the consistency proof (export with the previous tree size)",
            )
            try:
                cons = json.loads(cdata)
            except ValueError as exc:
                raise EvidenceError("consistency.json is not JSON") from exc
            if not isinstance(cons, dict):
                raise EvidenceError("consistency.json is not a JSON object")
            if cons.get("old_size") != prev.tree_size or cons.get("new_size") != cp.tree_size:
                raise EvidenceError(
                    f"consistency.json proves {cons.get('old_size')!r} -> "
                    f"{cons.get('new_size')!r}, but the checkpoints have tree sizes "
                    f"{prev.tree_size} -> {cp.tree_size}"
                )
            path = _decode_path(cons.get("proof"), "consistency.json proof")
            try:
                verify_consistency(prev.tree_size, cp.tree_size, prev.root_hash, cp.root_hash, path)
            except EvidenceError as exc:
                raise EvidenceError(
                    f"the log is not consistent with the previous checkpoint: {exc.message}"
                ) from exc
            previous_size = prev.tree_size
            checks.append(
                f"log at tree size {cp.tree_size} extends the previous checkpoint "
                f"(tree size {prev.tree_size})"
            )

        generator = manifest.get("generator") or {}
        return VerifyReport(
            origin=cp.origin,
            tree_size=cp.tree_size,
            root_hash=cp.root_hash,
            records=count,
            seq_ranges=runs,
            query=query,
            generator=f"{generator.get('name', '?')} {generator.get('version', '?')}",
            generated_at=str(manifest.get("generated_at")),
            full_log=full_log,
            previous_tree_size=previous_size,
            checks=checks,
        )
