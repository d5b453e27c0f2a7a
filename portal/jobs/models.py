"""A visible record of each background job (admins see the list; long jobs show their progress)."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.ledger.types import UTCDateTime, utcnow


class JobRecord(db.Model):
    """One run of a background job: what, on which queue, its state, progress and last error."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    #: The job function's registered name (``sync_position``, ``poll_receipts``, ...).
    kind: Mapped[str] = mapped_column(sa.String(60))
    queue: Mapped[str] = mapped_column(sa.String(20))
    #: RQ's job id (deterministic for jobs that must not run twice at once, e.g. ``sync-position-42``).
    rq_id: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    #: ``queued``, ``running``, ``done``, ``failed``, ``cancelled``.
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    args: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    progress: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(sa.Text)
    #: The run found nothing to do (a periodic sweep with nothing due): the jobs page hides such runs by default.
    idle: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    creditor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("creditors.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="status_known"),
        sa.Index("ix_jobs_created_at", "created_at"),
        sa.Index("ix_jobs_kind_id", "kind", "id"),
    )


class SchedulerHeartbeat(db.Model):
    """When the active periodic scheduler last showed it was alive (one row per scheduler role).

    Written by whichever ``flask rq scheduler`` holds the Redis lock (see :mod:`portal.jobs.heartbeat`), read by
    ``/readyz`` and the metrics: kept in the database, so a Redis restart does not make the scheduler look dead.
    """

    __tablename__ = "scheduler_heartbeats"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    #: The scheduler's random token (changes when another scheduler takes over), host and pid, for diagnosis.
    holder: Mapped[str] = mapped_column(sa.String(64))
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column()
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
