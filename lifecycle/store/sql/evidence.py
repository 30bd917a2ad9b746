"""The evidence log's rows: records appended once per run, gap-free, and signed checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from lifecycle.domain import Checkpoint
from lifecycle.exceptions import StoreError
from lifecycle.store.ports import RecordBuilder
from lifecycle.store.sql import mapping
from lifecycle.store.sql.runs import RunQueries
from lifecycle.store.sql.tables import CheckpointRow, EvidenceRow, RunRow


class EvidenceQueries(RunQueries):
    def leaf_hashes(self, from_seq: int = 0) -> list[bytes]:
        with self.session() as s:
            rows = s.exec(
                select(EvidenceRow.seq, EvidenceRow.leaf_hash)
                .where(EvidenceRow.seq >= from_seq)
                .order_by(col(EvidenceRow.seq))
            ).all()
            for expected, (seq, _) in enumerate(rows, start=from_seq):
                if seq != expected:
                    raise StoreError(f"evidence log has a gap: expected seq {expected}, got {seq}")
            return [bytes(h) for _, h in rows]

    def append_evidence(
        self, run_id: str, worker_id: str, build: RecordBuilder, now: datetime
    ) -> tuple[int, list[bytes]]:
        with self.session() as s:
            self.lock_evidence(s)
            existing = s.exec(select(EvidenceRow.seq).where(EvidenceRow.run_id == run_id)).first()
            if existing is not None:
                return existing, []
            seq = self._next_seq(s)
            row = self.record_row(seq, run_id, worker_id, build, now)
            s.add(row)
            run = s.get(RunRow, run_id)
            if run is not None:
                run.evidence_seq = seq
                s.add(run)
            s.flush()
            return seq, [bytes(row.leaf_hash)]

    @staticmethod
    def _next_seq(s: Session) -> int:
        last = s.exec(select(func.max(EvidenceRow.seq))).one()
        return 0 if last is None else last + 1

    def evidence_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        worker_id: str | None = None,
        batch: int = 1000,
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, record bytes) in seq order, streamed in batches (memory stays flat)."""
        after = -1
        while True:
            with self.session() as s:
                query = select(EvidenceRow.seq, EvidenceRow.body).where(EvidenceRow.seq > after)
                if since is not None:
                    query = query.where(col(EvidenceRow.created_at) >= since)
                if until is not None:
                    query = query.where(col(EvidenceRow.created_at) < until)
                if worker_id is not None:
                    query = query.where(EvidenceRow.worker_id == worker_id)
                rows = s.exec(query.order_by(col(EvidenceRow.seq)).limit(batch)).all()
            if not rows:
                return
            for seq, body in rows:
                yield seq, bytes(body)
            after = rows[-1][0]

    def save_checkpoint(self, tree_size: int, root: bytes, note: str, now: datetime) -> None:
        """Keep a signed checkpoint; another replica saving the same tree size first is fine
        (Ed25519 signatures are deterministic: it saved the same note)."""
        try:
            with self.session() as s:
                if s.get(CheckpointRow, tree_size) is None:
                    s.add(
                        CheckpointRow(tree_size=tree_size, root_hash=root, note=note, signed_at=now)
                    )
        except IntegrityError:
            pass

    def latest_checkpoint(self) -> Checkpoint | None:
        with self.session() as s:
            row = s.exec(
                select(CheckpointRow).order_by(col(CheckpointRow.tree_size).desc()).limit(1)
            ).first()
        return mapping.checkpoint(row) if row is not None else None
