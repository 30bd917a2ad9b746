"""The workforce as operators look at it: the roster searched and paged, and one worker with
their known account in each system and their runs, newest first. The API, the CLI (through
the API) and the console call these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lifecycle.domain import Link, Run, Worker
from lifecycle.exceptions import NotFoundError
from lifecycle.store.ports import Roster, Runs


class WorkerStore(Roster, Runs, Protocol):
    """What reading workers needs from the store."""


@dataclass(frozen=True, slots=True)
class SystemAccount:
    system: str
    link: Link | None
    """The account lifecycle knows in this system (None: none found or created yet)."""


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker: Worker
    accounts: list[SystemAccount]
    runs: list[Run]


def list_workers(
    store: WorkerStore,
    *,
    q: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Worker]:
    return store.find_workers(q=q or None, status=status, limit=limit, offset=offset)


def worker_view(
    store: WorkerStore, worker_id: str, systems: list[str], *, runs_limit: int = 50
) -> WorkerView:
    """The worker, an entry per configured system (and per linked one no longer configured),
    and their latest runs; NotFoundError for a worker the roster does not know."""
    worker = store.get_worker(worker_id)
    if worker is None:
        raise NotFoundError(f"worker {worker_id!r} is not in the workforce roster")
    links = {link.system: link for link in store.links_of(worker_id)}
    accounts = [SystemAccount(s, links.get(s)) for s in sorted(set(systems) | set(links))]
    runs = store.list_runs(worker_id=worker_id, limit=runs_limit)
    return WorkerView(worker, accounts, runs)
