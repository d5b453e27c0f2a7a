"""Which job runs an admin sees: filtered by state and kind, periodic runs that found nothing hidden, paged by id."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.jobs.models import JobRecord
from portal.jobs.registry import KINDS, all_tasks

#: Values of the state filter, and the job states each stands for.
STATES = {
    "": None,
    "active": ("queued", "running"),
    "failed": ("failed",),
    "done": ("done",),
}
#: Largest id a page may start before (ids are 64-bit; anything larger is no id of ours).
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class RecordFilter:
    """What the jobs page lists: a state (:data:`STATES`), a kind (:data:`~portal.jobs.registry.KINDS`), whether
    idle runs show, and the id the page starts before (newest first)."""

    state: str = ""
    kind: str = ""
    include_idle: bool = False
    before: int | None = None

    @classmethod
    def from_args(cls, args) -> RecordFilter:
        """The filter of a query string; unknown values fall back to "all" rather than failing."""
        before = args.get("before", "")
        return cls(
            state=args.get("status", "") if args.get("status", "") in STATES else "",
            kind=args.get("kind", "") if args.get("kind", "") in KINDS else "",
            include_idle=args.get("idle") == "1",
            before=int(before) if before.isdigit() and 0 < int(before) <= MAX_ID else None,
        )

    def args(self, **changes) -> dict:
        """The query-string arguments of this filter (with ``changes``), for links that keep it."""
        values = {"status": self.state or None, "kind": self.kind or None, "idle": "1" if self.include_idle else None,
                  "before": self.before}
        values.update(changes)
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class RecordPage:
    """One page of job runs, and the id the next (older) page starts before, if there is one."""

    records: list[JobRecord]
    next_before: int | None
    hidden_idle: int


def list_records(session: Session, creditor_id: int, flt: RecordFilter, *, limit: int = 50) -> RecordPage:
    """The creditor's (and the system's own) job runs matching ``flt``, newest first."""
    mine = sa.or_(JobRecord.creditor_id == creditor_id, JobRecord.creditor_id.is_(None))
    conditions = [mine]
    if STATES[flt.state]:
        conditions.append(JobRecord.status.in_(STATES[flt.state]))
    if flt.kind:
        conditions.append(JobRecord.kind.in_([spec.name for spec in all_tasks() if spec.kind == flt.kind]))
    hidden = 0
    if not flt.include_idle:
        hidden = session.scalar(sa.select(sa.func.count()).select_from(JobRecord)
                                .where(*conditions, JobRecord.idle.is_(True))) or 0
        conditions.append(JobRecord.idle.is_(False))
    if flt.before:
        conditions.append(JobRecord.id < flt.before)
    rows = list(session.scalars(sa.select(JobRecord).where(*conditions).order_by(JobRecord.id.desc())
                                .limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return RecordPage(rows, rows[-1].id if more else None, hidden)


def latest_run(session: Session, rq_id: str) -> JobRecord | None:
    """The newest run of the job with this deterministic id (a page follows its progress)."""
    return session.scalar(sa.select(JobRecord).where(JobRecord.rq_id == rq_id).order_by(JobRecord.id.desc()).limit(1))
