"""Writing validated positions in bulk: one block of IUVs, set-based debtor upserts, multi-row inserts.

What :func:`portal.ledger.services.create_position` does for one position, done for a batch of them with a few
statements per table instead of a few per position: the same rows (position, options with their IUV/NAV,
transfers, the "created" event, the shared debtor or a version of it), the same defaults (the creditor as first
beneficiary, the subject as remittance, the option descriptions), and the same sync state, so the periodic sweep
publishes them on pagoPA in GPD bulk calls. On PostgreSQL the rows go in with ``COPY`` (ids drawn from the
tables' sequences first); elsewhere with executemany inserts. Validation happened before, with the ledger's rules.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import allocation, sync_state
from portal.ledger.inputs import PositionInput
from portal.ledger.models import Creditor, Debtor, Event, PaymentOption, Position, Service, Transfer
from portal.ledger.services import new_iupd
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow

POSITIONS = Position.__table__
OPTIONS = PaymentOption.__table__
TRANSFERS = Transfer.__table__
EVENTS = Event.__table__
DEBTORS = Debtor.__table__

_CONTACT = ("street", "civic_number", "postal_code", "city", "province", "email", "pec", "phone")


@dataclass
class WriteContext:
    """Who writes, for which creditor and import, and what the actor may see (``None``: every service)."""

    creditor: Creditor
    services: dict[int, Service]
    import_id: int | None
    actor: str
    actor_user_id: int | None = None
    visible_service_ids: set[int] | None = None
    #: Set by a long import: the tables' statistics follow what it writes.
    statistics: Statistics | None = None


def option_description(subject: str, number: int | None, total: int) -> str:
    """An option's description when the file gives none, as manual entry makes it (``… - rata 2 di 3``)."""
    if number is None:
        return subject[:140]
    suffix = f" - rata {number} di {total}"
    return subject[: 140 - len(suffix)] + suffix


def write_new_positions(session: Session, ctx: WriteContext, batch: list[PositionInput], *,
                        now: datetime | None = None, extra: list[dict] | None = None) -> list[int]:
    """Insert ``batch`` (validated, normalised, none existing yet) and return the new positions' ids in order.

    ``extra``: per position, more (or other) position columns, e.g. ``replaces_id`` and the ``iupd`` of a re-issue.
    """
    if not batch:
        return []
    now = now or utcnow()
    creditor = ctx.creditor
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    debtor_ids = _debtors(session, ctx, batch, now=now, pg=pg)
    option_lists = [([("single", None, p.single)] if p.single else [])
                    + [("installment", n, o) for n, o in enumerate(p.installments, start=1)] for p in batch]
    numbers = iter(allocation.allocate(session, creditor, sum(len(o) for o in option_lists)))
    position_ids = _ids(conn, "positions", len(batch)) if pg else None
    positions = []
    for i, data in enumerate(batch):
        service = ctx.services[data.service_id]
        options = option_lists[i]
        positions.append({
            **({"id": position_ids[i]} if pg else {}),
            "creditor_id": creditor.id, "service_id": service.id, "debtor_id": debtor_ids[i],
            "iupd": new_iupd(creditor), "source": data.source, "external_id": data.external_id,
            "subject": data.subject, "status": PositionStatus.DRAFT,
            "amount_cents": data.single.amount_cents if data.single else sum(o.amount_cents for o in data.installments),
            "paid_cents": 0, "due_date": min(o.due_date for _, _, o in options), "created_by_id": ctx.actor_user_id,
            "created_at": now, "updated_at": now, "import_id": ctx.import_id,
            **sync_state.initial_state(publish=not service.draft_first, now=now),
            **(extra[i] if extra else {}),
        })
    if pg:
        _copy(conn, POSITIONS, positions)
    else:
        position_ids = _insert_returning(conn, POSITIONS, positions)
    option_rows, transfer_rows, events = [], [], []
    option_transfers = []
    for i, data in enumerate(batch):
        navs = []
        for kind, number, option in option_lists[i]:
            allocated = next(numbers)
            navs.append(allocated.nav)
            option_rows.append({
                "position_id": position_ids[i], "creditor_id": creditor.id, "kind": kind,
                "installment_number": number, "iuv": allocated.iuv, "notice_number": allocated.nav,
                "amount_cents": option.amount_cents, "due_date": option.due_date,
                "description": option.description or option_description(data.subject, number, len(data.installments)),
                "status": OptionStatus.UNPAID, "paid_at": None,
            })
            option_transfers.append((data, option.transfers))
        events.append({
            "position_id": position_ids[i], "kind": "created", "at": now, "actor": ctx.actor,
            "actor_user_id": ctx.actor_user_id,
            "details": {"source": data.source, "external_id": data.external_id,
                        "amount_cents": positions[i]["amount_cents"], "notice_numbers": navs,
                        **({"import_id": ctx.import_id} if ctx.import_id is not None else {})},
        })
    if pg:
        option_ids = _ids(conn, "payment_options", len(option_rows))
        for row, option_id in zip(option_rows, option_ids, strict=True):
            row["id"] = option_id
        _copy(conn, OPTIONS, option_rows)
    else:
        option_ids = _insert_returning(conn, OPTIONS, option_rows)
    for option_id, (data, transfers) in zip(option_ids, option_transfers, strict=True):
        for index, transfer in enumerate(transfers, start=1):
            own = transfer.beneficiary_fiscal_code == creditor.fiscal_code
            transfer_rows.append({
                "option_id": option_id, "index": index, "amount_cents": transfer.amount_cents,
                "beneficiary_fiscal_code": transfer.beneficiary_fiscal_code,
                "beneficiary_name": transfer.beneficiary_name or (creditor.name if own else ""),
                "iban": transfer.iban, "taxonomy_code": transfer.taxonomy_code,
                "remittance": transfer.remittance or data.subject,
            })
    if pg:
        _copy(conn, TRANSFERS, transfer_rows)
        _copy(conn, EVENTS, events)
    else:
        conn.execute(sa.insert(TRANSFERS), transfer_rows)
        conn.execute(sa.insert(EVENTS), events)
    if ctx.statistics is not None:
        ctx.statistics.wrote(conn, debtors=ctx.statistics.debtors_added, positions=len(positions),
                             payment_options=len(option_rows), transfers=len(transfer_rows), events=len(events))
        ctx.statistics.debtors_added = 0
    return list(position_ids)


def _debtors(session: Session, ctx: WriteContext, batch: list[PositionInput], *, now: datetime,
             pg: bool) -> list[int]:
    """The debtor row of each position: the shared one (created, or refreshed as ``upsert_debtor`` does), or a
    version of it when the actor does not see every service the debtor has positions in."""
    conn = session.connection()
    creditor_id = ctx.creditor.id
    codes = sorted({p.debtor.fiscal_code for p in batch})
    existing = {}
    if pg:
        existing = {row["fiscal_code"]: row for row in _probe(conn, _SHARED_DEBTORS, codes=codes,
                                                              creditor=creditor_id)}
    else:
        for start in range(0, len(codes), 1000):
            part = codes[start:start + 1000]
            for row in conn.execute(sa.select(DEBTORS).where(
                    DEBTORS.c.creditor_id == creditor_id, DEBTORS.c.fiscal_code.in_(part),
                    DEBTORS.c.version_of_id.is_(None))).mappings():
                existing[row["fiscal_code"]] = dict(row)
    guarded: set[int] = set()
    if ctx.visible_service_ids is not None and existing:
        ids = [row["id"] for row in existing.values()]
        if pg:
            guarded = {row["id"] for row in _probe(conn, _GUARDED_DEBTORS, ids=ids,
                                                   visible=sorted(ctx.visible_service_ids))}
        else:
            outside = sa.select(Position.debtor_id).where(Position.debtor_id.in_(ids)).distinct()
            if ctx.visible_service_ids:
                outside = outside.where(Position.service_id.not_in(ctx.visible_service_ids))
            guarded = set(conn.execute(outside).scalars())
    # The last row of a fiscal code in the batch wins, as consecutive upsert_debtor calls would have it.
    wanted: dict[str, dict] = {}
    for data in batch:
        d = data.debtor
        typed = {"kind": d.kind, "name": d.name, "country": d.country or "IT",
                 **{name: (getattr(d, name) or None) for name in _CONTACT}}
        wanted[d.fiscal_code] = typed
    new_rows, updates, versions = [], [], []
    result: dict[str, int] = {}
    version_of_position: dict[int, dict] = {}
    for code, typed in wanted.items():
        row = existing.get(code)
        if row is None:
            new_rows.append({"creditor_id": creditor_id, "fiscal_code": code, "version_of_id": None, "created_at": now,
                             **typed})
            continue
        result[code] = row["id"]
        if row["id"] in guarded:
            continue
        merged = {"kind": typed["kind"], "name": typed["name"], "country": typed["country"],
                  **{name: typed[name] or row[name] for name in _CONTACT}}
        if any(row[name] != value for name, value in merged.items()):
            updates.append({"debtor_id": row["id"], **merged})
    if guarded:
        for i, data in enumerate(batch):
            row = existing.get(data.debtor.fiscal_code)
            if row is None or row["id"] not in guarded:
                continue
            d = data.debtor
            typed = {"kind": d.kind, "name": d.name, "country": d.country or "IT",
                     **{name: (getattr(d, name) or None) for name in _CONTACT}}
            if all((row[name] or None) == value for name, value in typed.items()):
                continue
            version = {"creditor_id": creditor_id, "fiscal_code": d.fiscal_code, "version_of_id": row["id"],
                       "created_at": now, **typed}
            versions.append(version)
            version_of_position[i] = version
    inserts = new_rows + versions
    if inserts:
        if pg:
            ids = _ids(conn, "debtors", len(inserts))
            for row, debtor_id in zip(inserts, ids, strict=True):
                row["id"] = debtor_id
            _copy(conn, DEBTORS, inserts)
        else:
            ids = _insert_returning(conn, DEBTORS, inserts)
            for row, debtor_id in zip(inserts, ids, strict=True):
                row["id"] = debtor_id
        for row in new_rows:
            result[row["fiscal_code"]] = row["id"]
        if ctx.statistics is not None:
            ctx.statistics.debtors_added += len(inserts)
    if updates and pg:
        _update_debtors(conn, updates)
    elif updates:
        # The keys named as columns become the SET clause of each row's UPDATE.
        conn.execute(sa.update(DEBTORS).where(DEBTORS.c.id == sa.bindparam("debtor_id")), updates)
    return [version_of_position[i]["id"] if i in version_of_position else result[p.debtor.fiscal_code]
            for i, p in enumerate(batch)]


# During a large import the tables grow inside one transaction and their statistics say they are empty: an IN list
# was then planned as a scan of every debtor of the creditor for each batch (quadratic). One probe of the unique
# index per key, whatever the statistics say; never prepared (a generic plan probes nothing).
_SHARED_DEBTORS = ("SELECT d.* FROM unnest(%(codes)s::text[]) AS k(code) CROSS JOIN LATERAL "
                   "(SELECT * FROM debtors WHERE creditor_id = %(creditor)s AND fiscal_code = k.code "
                   "AND version_of_id IS NULL LIMIT 1) AS d")
#: Debtors with a position in a service the actor does not see (they get a version instead of an update).
_GUARDED_DEBTORS = ("SELECT k.id FROM unnest(%(ids)s::bigint[]) AS k(id) WHERE EXISTS (SELECT 1 FROM positions p "
                    "WHERE p.debtor_id = k.id AND NOT (p.service_id = ANY(%(visible)s::bigint[])))")


def _probe(conn, query: str, **params) -> list[dict]:
    from psycopg.rows import dict_row

    raw = conn.connection.driver_connection
    with raw.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params, prepare=False)
        return cursor.fetchall()


_UPDATED = ("kind", "name", "country", *_CONTACT)
_UPDATE_DEBTORS = (
    "UPDATE debtors AS d SET " + ", ".join(f'"{c}" = v."{c}"' for c in _UPDATED)  # noqa: S608 - constant names
    + " FROM unnest(" + ", ".join(["%s::bigint[]"] + ["%s::text[]"] * len(_UPDATED)) + ") AS v(id, "
    + ", ".join(f'"{c}"' for c in _UPDATED) + ") WHERE d.id = v.id AND d.id = ANY(%s::bigint[])")


def _update_debtors(conn, updates: list[dict]) -> None:
    """Refresh many debtors in one statement (arrays unnested) instead of one UPDATE per debtor."""
    raw = conn.connection.driver_connection
    ids = [u["debtor_id"] for u in updates]
    # The ids again as an array the planner can count: the debtors are then found by their key, not by a scan of
    # the whole table joined to the unnested rows (whose number the planner does not know).
    raw.execute(_UPDATE_DEBTORS, [ids] + [[u[c] for u in updates] for c in _UPDATED] + [ids], prepare=False)


#: The tables a bulk write grows (their statistics are refreshed as they grow, see :class:`Statistics`).
GROWN = ("debtors", "positions", "payment_options", "transfers", "events")


class Statistics:
    """Keeps the planner's statistics of the tables a large import grows in line with their size.

    An import writes inside one transaction: autovacuum does not see its rows, and the plans made while the tables
    were small (the triggers' cached plans above all, such as the collections' summary reading the options of the
    positions just inserted) stay scans of the whole table while it grows tenfold, which makes the import quadratic.
    Each table is analysed again (``ANALYZE`` sees the transaction's own rows and invalidates the cached plans)
    whenever what this import wrote into it exceeds what its statistics last counted; on a ledger already much larger
    than the import this never happens.
    """

    def __init__(self):
        self.counted: dict[str, float] | None = None
        #: Rows this import wrote into each table since its statistics were last refreshed.
        self.since = dict.fromkeys(GROWN, 0)
        #: Debtors inserted by the batch being written.
        self.debtors_added = 0

    def wrote(self, conn, **counts: int) -> None:
        """Note ``table=rows`` just written, and analyse the tables that doubled since their last statistics."""
        if conn.dialect.name != "postgresql":
            return
        for table, count in counts.items():
            self.since[table] += count
        if self.counted is None:
            self.counted = self._reltuples(conn, GROWN)
        stale = [t for t in GROWN if self.since[t] >= 1000 and self.since[t] > self.counted.get(t, 0.0)]
        for table in stale:
            conn.exec_driver_sql(f'ANALYZE "{table}"')
            self.since[table] = 0
        if stale:
            self.counted.update(self._reltuples(conn, stale))

    @staticmethod
    def _reltuples(conn, tables) -> dict[str, float]:
        return {name: max(tuples, 0.0) for name, tuples in conn.execute(sa.text(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:names) AND relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace"), {"names": list(tables)}).tuples()}


def _ids(conn, table: str, count: int) -> list[int]:
    """``count`` fresh ids from a PostgreSQL table's sequence."""
    if count == 0:
        return []
    return list(conn.execute(
        sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
        {"table": table, "n": count}).scalars())


def _insert_returning(conn, table: sa.Table, rows: list[dict]) -> list[int]:
    """Insert ``rows`` and return their ids in the same order (SQLAlchemy's insertmanyvalues)."""
    if not rows:
        return []
    result = conn.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return list(result.scalars())


def insert_rows(session: Session, table: sa.Table, rows: list[dict]) -> None:
    """Insert many rows (same keys each) in the session's transaction: ``COPY`` on PostgreSQL, executemany
    elsewhere; ids come from the table's defaults. For rows nobody needs back, e.g. timeline events."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows)
    else:
        conn.execute(sa.insert(table), rows)


def _copy(conn, table: sa.Table, rows: list[dict]) -> None:
    """``COPY table FROM STDIN`` with psycopg, in the session's own transaction."""
    if not rows:
        return
    columns = list(rows[0])
    raw = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    # COPY takes text: JSON as its text, enums as their stored value.
    converted = {c for c in columns if isinstance(table.c[c].type, (sa.JSON, sa.Enum))}
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        if converted:
            for row in rows:
                copy.write_row([_text(row[c]) if c in converted else row[c] for c in columns])
        else:
            for row in rows:
                copy.write_row([row[c] for c in columns])


def _text(value):
    if isinstance(value, enum.Enum):
        return value.value
    return None if value is None else json.dumps(value)
