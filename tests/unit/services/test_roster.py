"""``lifecycle hr import``: the roster CSV, rejected rows with line numbers, refresh."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lifecycle.exceptions import ConfigError
from lifecycle.services.roster import import_roster
from lifecycle.store.sql import SqlStore

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CSV = """\
worker_id,name,email,job_code,engagement,vendor,status
W0001,A. Lee,a.lee@example.org,VA-SCHED,contractor,Acme Staffing,active
W0002,B. Kim,not-an-email,VA-BILL,contractor,Acme Staffing,active
W0003,C. Diaz,c.diaz@example.org,VA-BILL,freelancer,,active
bad id!,D,d@example.org,,employee,,active
W0005,E. Ng,e.ng@example.org,VA-INTAKE,employee,,terminated
W0001,A. Lee again,a2@example.org,VA-SCHED,contractor,,active
W0007,F,f@example.org,,employee,,active,extra
"""


@pytest.fixture
def store() -> SqlStore:
    s = SqlStore("sqlite://")
    s.create_schema()
    return s


def test_good_rows_load_and_bad_rows_are_rejected_with_their_line(
    store: SqlStore, tmp_path: Path
) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(CSV)
    result = import_roster(store, path, NOW, complete=False)
    assert (result.added, result.updated) == (2, 0)
    rejected = {r.line: r.reason for r in result.rejected}
    assert set(rejected) == {3, 4, 5, 7, 8}
    assert "email: Value error, is not an email address" in rejected[3]
    assert "engagement" in rejected[4]
    assert "worker_id" in rejected[5]
    assert "already on line 2" in rejected[7]
    assert "more than the header" in rejected[8]
    worker = store.get_worker("W0001")
    assert worker is not None
    assert (worker.job_code, worker.engagement, worker.vendor) == (
        "VA-SCHED",
        "contractor",
        "Acme Staffing",
    )
    terminated = store.get_worker("W0005")
    assert terminated is not None and terminated.status == "terminated"
    assert store.get_worker("W0002") is None


def test_refresh_updates_and_a_complete_file_marks_the_unlisted_absent(
    store: SqlStore, tmp_path: Path
) -> None:
    first = tmp_path / "a.csv"
    first.write_text("worker_id,job_code\nW1,VA-SCHED\nW2,VA-BILL\n")
    assert import_roster(store, first, NOW, complete=False).added == 2
    second = tmp_path / "b.csv"
    second.write_text("job_code,worker_id,engagement\nVA-INTAKE,W1,employee\n")
    result = import_roster(store, second, NOW, complete=True)
    assert (result.added, result.updated, result.absent) == (0, 1, 1)
    w1, w2 = store.get_worker("W1"), store.get_worker("W2")
    assert w1 is not None and w1.job_code == "VA-INTAKE"
    assert w2 is not None and w2.status == "absent"


def test_a_file_with_rejects_is_never_treated_as_complete(store: SqlStore, tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text("worker_id\nW1\nW2\n")
    import_roster(store, first, NOW, complete=False)
    second = tmp_path / "b.csv"
    second.write_text("worker_id,status\nW1,active\nW3,gone\n")
    result = import_roster(store, second, NOW, complete=True)
    assert result.absent == 0 and [r.line for r in result.rejected] == [3]


def test_a_header_without_worker_id_or_with_unknown_columns_is_refused(
    store: SqlStore, tmp_path: Path
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("id,name\nW1,x\n")
    with pytest.raises(ConfigError, match="worker_id column"):
        import_roster(store, path, NOW, complete=False)
    path.write_text("worker_id,salary\nW1,1\n")
    with pytest.raises(ConfigError, match="unknown column\\(s\\) salary"):
        import_roster(store, path, NOW, complete=False)


def test_a_file_without_status_never_revives_a_terminated_worker(
    store: SqlStore, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("worker_id,email,status\nW0900,w900@example.org,terminated\n")
    import_roster(store, first, NOW, complete=False)
    again = tmp_path / "again.csv"
    again.write_text("worker_id,name,email\nW0900,New Name,\n")
    result = import_roster(store, again, NOW, complete=False)
    assert result.rejected == []
    worker = store.get_worker("W0900")
    assert worker is not None
    assert worker.status == "terminated"
    assert worker.name == "New Name"
    assert worker.email == "w900@example.org"  # a blank cell does not erase it


def test_a_large_file_is_streamed_in_batches_with_progress(store: SqlStore, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    lines = ["worker_id,email,engagement"]
    lines += [f"W{n:05d},w{n}@example.org,employee" for n in range(1, 26)]
    lines.insert(10, "W00003,again@example.org,employee")  # a repeat, far from the first
    path.write_text("\n".join(lines) + "\n")
    seen: list[tuple[int, int]] = []
    result = import_roster(
        store, path, NOW, complete=False, batch=4, progress=lambda n, r: seen.append((n, r.added))
    )
    assert (result.added, result.updated) == (25, 0)
    assert [(r.line, "already on line 4" in r.reason) for r in result.rejected] == [(11, True)]
    assert len(seen) == 7  # 25 good rows: six batches of 4, then the last one
    assert seen[-1] == (26, 25) and [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert len(store.workers()) == 25
    # The same file refreshed in other batches: every row updated, none added twice.
    again = import_roster(store, path, NOW, complete=False, batch=7)
    assert (again.added, again.updated) == (0, 25)


def test_a_complete_file_in_batches_marks_absent_only_the_unlisted(
    store: SqlStore, tmp_path: Path
) -> None:
    first = tmp_path / "a.csv"
    first.write_text("worker_id\n" + "".join(f"W{n:03d}\n" for n in range(1, 11)))
    import_roster(store, first, NOW, complete=False)
    second = tmp_path / "b.csv"
    second.write_text("worker_id\n" + "".join(f"W{n:03d}\n" for n in range(1, 11, 2)))
    result = import_roster(store, second, NOW, complete=True, batch=2)
    assert (result.added, result.updated, result.absent) == (0, 5, 5)
    status = {w.worker_id: w.status for w in store.workers()}
    assert {w for w, s in status.items() if s == "absent"} == {f"W{n:03d}" for n in range(2, 11, 2)}
