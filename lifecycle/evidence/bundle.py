"""The auditor's evidence bundle: one zip an auditor verifies offline with only our public key.

Layout (DESIGN.md, Evidence)::

    checkpoint            C2SP signed tree head the proofs lead to
    keys/<name>.pub       the log's verifier key (informational: the auditor brings their own)
    records/<seq>.json    dpe/1 records, canonical JSON, byte for byte as logged
    proofs/<seq>.json     {"leaf_index", "tree_size", "audit_path": [base64, ...]}
    consistency.json      {"old_size", "new_size", "proof"} when a previous size was given
    terminations.csv      one row per termination (see terminations.py)
    report.pdf            human summary (see report.py)
    manifest.json         query, generator, the seqs the query matched, SHA-256 of every file
    manifest.sig          C2SP signed note over the manifest's SHA-256, by the log key

Why ``seqs`` and ``manifest.sig``: an auditor must be able to test that the report is complete
(no record the query matched was left out). For an unfiltered export the signed checkpoint
alone proves it: the seqs must be exactly 0..tree_size-1. A filtered export (one worker, one
period) holds a subset, so "no gap" can only mean "every seq the query matched is here". The
manifest lists those seqs (as ranges) and the log key signs the manifest, so dropping a
record means either a visible gap or a manifest whose signature fails. The signed manifest note
starts with a line containing spaces, which no checkpoint origin may, so it can never be
mistaken for a checkpoint.

Memory: records stream from an iterator straight into the zip; what is kept per record is its
two file digests (64 bytes) plus the proof levels (about 64 bytes per leaf of the log) and the
spooled CSV row on disk. The manifest is streamed out the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from lifecycle.evidence import zipindex
from lifecycle.evidence.checkpoint import (
    SigningKey,
    VerifierKey,
    parse_checkpoint_text,
    verify_note,
)
from lifecycle.evidence.merkle import ProofTree
from lifecycle.evidence.report import ReportStats, render_pdf
from lifecycle.evidence.terminations import TerminationsTable
from lifecycle.exceptions import EvidenceError, OutOfRangeError

BUNDLE_FORMAT = "lifecycle-evidence-bundle/1"
MANIFEST_NOTE_TITLE = "lifecycle evidence bundle manifest v1"
QUERY_KEYS = ("since", "until", "worker")
PROGRESS_EVERY = 1000


@dataclass(frozen=True)
class BundleSummary:
    """What was written, for the CLI's output and the API's headers."""

    origin: str
    tree_size: int
    records: int
    terminations: int
    sla_met: int
    first_seq: int | None
    last_seq: int | None
    manifest_sha256: str


def key_file_name(key: VerifierKey) -> str:
    """``keys/<name>.pub`` with the path separators of a URL-like name made safe."""
    return "keys/" + key.name.replace("/", "_").replace("\\", "_") + ".pub"


def manifest_note_text(origin: str, manifest_sha256: str) -> str:
    return f"{MANIFEST_NOTE_TITLE}\n{origin}\nsha256 {manifest_sha256}\n"


class _Ranges:
    """Seqs as inclusive [first, last] runs in arrival order: tiny for contiguous exports."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def add(self, seq: int) -> None:
        if self.runs and seq == self.runs[-1][1] + 1:
            self.runs[-1][1] = seq
        else:
            self.runs.append([seq, seq])


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zinfo(name: str, *, compress: bool = True) -> zipfile.ZipInfo:
    # A fixed timestamp keeps the zip a function of its contents. Proofs are base64 hashes,
    # which do not compress, so they are stored and the deflate cost is not paid twice a record.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def write_bundle(
    out: str | os.PathLike[str] | IO[bytes],
    *,
    records: Iterable[tuple[int, bytes]],
    leaf_hashes: Sequence[bytes],
    checkpoint: str,
    signing_key: SigningKey,
    query: Mapping[str, str | None],
    generator_version: str,
    previous_tree_size: int | None = None,
    generated_at: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> BundleSummary:
    """Write the evidence bundle for the records a query matched.

    ``records`` yields ``(seq, canonical record bytes)`` in ascending seq order, exactly as
    stored; ``leaf_hashes`` are the whole log's leaf hashes (index = seq), at least as many as
    the checkpoint's tree size; ``checkpoint`` is a checkpoint signed by ``signing_key`` that
    covers every record yielded. The writer does not judge the records: an altered or missing
    record is written as it is and the verifier reports it. ``previous_tree_size`` adds a
    consistency proof from that size, for an auditor holding an earlier checkpoint.
    ``progress`` is called with the number of records written so far, every
    ``PROGRESS_EVERY`` records and once at the end.
    """
    unknown = set(query) - set(QUERY_KEYS)
    if unknown:
        raise EvidenceError(f"unknown query keys {sorted(unknown)}; use {list(QUERY_KEYS)}")
    verifier = signing_key.verifier
    cp = parse_checkpoint_text(verify_note(checkpoint, verifier))
    tree = ProofTree(leaf_hashes, cp.tree_size)
    if previous_tree_size is not None and not 0 <= previous_tree_size <= cp.tree_size:
        raise OutOfRangeError(
            f"previous tree size {previous_tree_size} is beyond the log: the log's size is "
            f"{cp.tree_size} (use 0..{cp.tree_size})"
        )
    stamp = _iso(generated_at or datetime.now(UTC))
    other_digests: list[tuple[str, str]] = []
    record_digests = bytearray()
    ranges = _Ranges()
    stats = ReportStats()

    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        TerminationsTable() as table,
    ):
        zipindex.install(zf, _zinfo)

        def put(name: str, data: bytes, *, compress: bool = True) -> bytes:
            zf.writestr(_zinfo(name, compress=compress), data)
            return hashlib.sha256(data).digest()

        other_digests.append(("checkpoint", put("checkpoint", checkpoint.encode()).hex()))
        key_name = key_file_name(verifier)
        other_digests.append((key_name, put(key_name, (verifier.text() + "\n").encode()).hex()))

        count = 0
        highest = -1
        for seq, data in records:
            if not 0 <= seq < cp.tree_size:
                raise EvidenceError(
                    f"record seq {seq} is not covered by the checkpoint (tree size "
                    f"{cp.tree_size}); sign a new checkpoint before exporting"
                )
            # Out-of-order seqs are written as they come (the verifier reports them), but a
            # seq twice cannot be written at all: a zip holds one records/<seq>.json.
            if seq <= highest and any(a <= seq <= b for a, b in ranges.runs):
                raise EvidenceError(f"the store yielded record seq {seq} twice")
            highest = max(highest, seq)
            audit_path = ",".join(
                f'"{base64.b64encode(h).decode()}"' for h in tree.inclusion_proof(seq)
            )
            proof = f'{{"leaf_index":{seq},"tree_size":{cp.tree_size},"audit_path":[{audit_path}]}}'
            record_digests += put(f"records/{seq}.json", data)
            record_digests += put(
                f"proofs/{seq}.json",
                proof.encode(),
                compress=False,
            )
            ranges.add(seq)
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(count)
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                stats.add(parsed, table.add(seq, parsed))

        if progress is not None:
            progress(count)

        if previous_tree_size is not None:
            consistency = {
                "old_size": previous_tree_size,
                "new_size": cp.tree_size,
                "proof": [
                    base64.b64encode(h).decode() for h in tree.consistency_proof(previous_tree_size)
                ],
            }
            other_digests.append(
                (
                    "consistency.json",
                    put("consistency.json", json.dumps(consistency).encode()).hex(),
                )
            )

        with zf.open(_zinfo("terminations.csv"), "w") as f:
            csv_hash = hashlib.sha256()
            for chunk in table.iter_csv():
                csv_hash.update(chunk)
                f.write(chunk)
        other_digests.append(("terminations.csv", csv_hash.hexdigest()))

        pdf = render_pdf(
            stats,
            query=query,
            origin=cp.origin,
            tree_size=cp.tree_size,
            generator_version=generator_version,
            generated_at=stamp,
        )
        other_digests.append(("report.pdf", put("report.pdf", pdf).hex()))

        head: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "generator": {"name": "lifecycle", "version": generator_version},
            "generated_at": stamp,
            "query": {k: query.get(k) for k in QUERY_KEYS},
            "log": {
                "origin": cp.origin,
                "tree_size": cp.tree_size,
                "root_hash": base64.b64encode(cp.root_hash).decode(),
                "key": verifier.text(),
            },
            "previous_tree_size": previous_tree_size,
            "seqs": {"count": count, "ranges": ranges.runs},
            "terminations": stats.terminations,
        }
        with zf.open(_zinfo("manifest.json"), "w") as f:
            manifest_hash = hashlib.sha256()
            for chunk in _manifest_chunks(head, other_digests, ranges.runs, record_digests):
                manifest_hash.update(chunk)
                f.write(chunk)
        digest = manifest_hash.hexdigest()
        note = signing_key.sign_note(manifest_note_text(cp.origin, digest))
        zf.writestr(_zinfo("manifest.sig"), note.encode())

    runs = ranges.runs
    return BundleSummary(
        origin=cp.origin,
        tree_size=cp.tree_size,
        records=count,
        terminations=stats.terminations,
        sla_met=stats.sla_met,
        first_seq=runs[0][0] if runs else None,
        last_seq=runs[-1][1] if runs else None,
        manifest_sha256=digest,
    )


def _iter_seqs(runs: list[list[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


def _manifest_chunks(
    head: dict[str, Any],
    other_digests: list[tuple[str, str]],
    runs: list[list[int]],
    record_digests: bytearray,
) -> Iterator[bytes]:
    """The manifest JSON, written piecewise so 200,000 file entries are never one string."""
    yield json.dumps(head, indent=1)[:-2].encode() + b',\n "files": {'
    sep = b"\n  "
    for name, hexd in other_digests:
        yield sep + json.dumps(name).encode() + b": " + json.dumps(hexd).encode()
        sep = b",\n  "
    for i, seq in enumerate(_iter_seqs(runs)):
        rec = record_digests[64 * i : 64 * i + 32].hex()
        prf = record_digests[64 * i + 32 : 64 * i + 64].hex()
        yield (sep + f'"records/{seq}.json": "{rec}",\n  "proofs/{seq}.json": "{prf}"'.encode())
        sep = b",\n  "
    yield b"\n }\n}\n"
