"""Writing validated positions in bulk: one block of IUVs, set-based debtor upserts, multi-row inserts.

What :func:`portal.ledger.services.create_position` does for one position, done for a batch of them with a few
statements per table instead of a few per position: the same rows (position, options with their IUV/NAV,
transfers, the "created" event, the shared debtor or a version of it), the same defaults (the creditor as first
beneficiary, the subject as remittance, the option descriptions), and the same sync state, so the periodic sweep
publishes them on pagoPA in GPD bulk calls. On PostgreSQL the rows go in with ``COPY`` (ids drawn from the
tables' sequences first); elsewhere with executemany inserts. Validation happened before, with the ledger's rules.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import allocation, sync_state
from portal.ledger.inputs import PositionInput
from portal.ledger.models import Creditor, Debtor, Event, PaymentOption, Position, Service, Transfer
from portal.ledger.services import new_iupds
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
    #: Set by :func:`pipelined` (a long import on PostgreSQL): batches are sent in the background.
    pipeline: Pipeline | None = None


def option_description(subject: str, number: int | None, total: int) -> str:
    """An option's description when the file gives none, as manual entry makes it (``… - rata 2 di 3``)."""
    if number is None:
        return subject[:140]
    suffix = f" - rata {number} di {total}"
    return subject[: 140 - len(suffix)] + suffix


_POSITION_COLUMNS = ("creditor_id", "service_id", "debtor_id", "iupd", "source", "external_id", "subject", "status",
                     "amount_cents", "paid_cents", "due_date", "created_by_id", "created_at", "updated_at",
                     "import_id", "pagopa_target", "pagopa_version", "sync_pending", "sync_attempts", "sync_next_at")
_SYNC_COLUMNS = _POSITION_COLUMNS[-5:]
_OPTION_COLUMNS = ("position_id", "creditor_id", "kind", "installment_number", "iuv", "notice_number", "amount_cents",
                   "due_date", "description", "status", "paid_at")
_TRANSFER_COLUMNS = ("option_id", "index", "amount_cents", "beneficiary_fiscal_code", "beneficiary_name", "iban",
                     "taxonomy_code", "remittance")
_EVENT_COLUMNS = ("position_id", "kind", "at", "actor", "actor_user_id", "details")
_UPDATED = ("kind", "name", "country", *_CONTACT)
_DEBTOR_COLUMNS = ("creditor_id", "fiscal_code", "version_of_id", "created_at", *_UPDATED)

#: One table's rows for COPY: (table, columns, rows as tuples in the columns' order).
Rows = tuple[str, tuple[str, ...], list[tuple]]


def write_new_positions(session: Session, ctx: WriteContext, batch: list[PositionInput], *,
                        now: datetime | None = None, extra: list[dict] | None = None) -> list[int]:
    """Insert ``batch`` (validated, normalised, none existing yet) and return the new positions' ids in order.

    ``extra``: per position, more (or other) position columns, e.g. ``replaces_id`` and the ``iupd`` of a re-issue.
    Under :func:`pipelined` the rows reach the database later (before the next batch's are sent, at the latest when
    the pipeline ends): the ids are then not yet usable in other statements.
    """
    if not batch:
        return []
    now = now or utcnow()
    creditor = ctx.creditor
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return _write_elsewhere(session, ctx, batch, now=now, extra=extra)
    pipeline = ctx.pipeline
    if pipeline is not None:
        pipeline.wait()
        pipeline.make_room()
    raw = conn.connection.driver_connection
    debtor_ids, debtor_rows, debtor_updates = _debtors(session, ctx, batch, now=now, pg=True)
    option_lists = _option_lists(batch)
    option_count = sum(len(o) for o in option_lists)
    numbers = allocation.allocate(session, creditor, option_count)
    position_ids = _ids(raw, "positions", len(batch))
    option_ids = _ids(raw, "payment_options", option_count)
    if pipeline is not None:
        if debtor_updates:
            # Debtors not remembered (see Pipeline.remember_debtors): refreshed now, before the next batch reads them.
            _update_debtors(raw, debtor_updates)
        # The previous batch's rows go to the server while this batch's are built.
        pipeline.release()
    columns, positions = _position_rows(ctx, batch, debtor_ids, option_lists, now=now, extra=extra, pg=True)
    columns = ("id", *columns)
    positions = [(position_id, *row) for position_id, row in zip(position_ids, positions, strict=True)]
    options, option_transfers, navs = _option_rows(ctx, batch, position_ids, option_lists, numbers, pg=True)
    options = [(option_id, *row) for option_id, row in zip(option_ids, options, strict=True)]
    transfers = _transfer_rows(ctx, option_ids, option_transfers)
    events = _event_rows(ctx, batch, position_ids, [row[9] for row in positions], navs, now=now, pg=True)
    copies: list[Rows] = [("debtors", ("id", *_DEBTOR_COLUMNS), debtor_rows), ("positions", columns, positions),
                          ("payment_options", ("id", *_OPTION_COLUMNS), options),
                          ("transfers", _TRANSFER_COLUMNS, transfers), ("events", _EVENT_COLUMNS, events)]
    counts = {"debtors": len(debtor_rows), "positions": len(positions), "payment_options": len(options),
              "transfers": len(transfers), "events": len(events)}
    if pipeline is not None:
        pipeline.hold(copies, counts)
        if not pipeline.remember_debtors(ctx):
            # Its new debtors must be stored before the next batch looks debtors up: sent now, not held.
            pipeline.release()
    else:
        _send(raw, copies, ctx.statistics, counts)
        if debtor_updates:
            _update_debtors(raw, debtor_updates)
    return list(position_ids)


def _write_elsewhere(session: Session, ctx: WriteContext, batch: list[PositionInput], *, now: datetime,
                     extra: list[dict] | None) -> list[int]:
    """The same rows without COPY and sequences (SQLite): multi-row inserts returning the new ids."""
    conn = session.connection()
    debtor_ids, _, _ = _debtors(session, ctx, batch, now=now, pg=False)
    option_lists = _option_lists(batch)
    numbers = allocation.allocate(session, ctx.creditor, sum(len(o) for o in option_lists))
    columns, positions = _position_rows(ctx, batch, debtor_ids, option_lists, now=now, extra=extra, pg=False)
    position_ids = _insert_returning(conn, POSITIONS, [dict(zip(columns, row, strict=True)) for row in positions])
    options, option_transfers, navs = _option_rows(ctx, batch, position_ids, option_lists, numbers, pg=False)
    option_ids = _insert_returning(conn, OPTIONS, [dict(zip(_OPTION_COLUMNS, row, strict=True)) for row in options])
    transfers = _transfer_rows(ctx, option_ids, option_transfers)
    if transfers:
        conn.execute(sa.insert(TRANSFERS), [dict(zip(_TRANSFER_COLUMNS, row, strict=True)) for row in transfers])
    amounts = [row[columns.index("amount_cents")] for row in positions]
    events = _event_rows(ctx, batch, position_ids, amounts, navs, now=now, pg=False)
    conn.execute(sa.insert(EVENTS), [dict(zip(_EVENT_COLUMNS, row, strict=True)) for row in events])
    return list(position_ids)


def _option_lists(batch: list[PositionInput]) -> list[list[tuple]]:
    """Per position, its options as (kind, installment number, option): the single payment first."""
    return [([("single", None, p.single)] if p.single else [])
            + [("installment", n, o) for n, o in enumerate(p.installments, start=1)] for p in batch]


def _position_rows(ctx: WriteContext, batch: list[PositionInput], debtor_ids: list[int], option_lists, *,
                   now: datetime, extra: list[dict] | None, pg: bool) -> tuple[tuple[str, ...], list[tuple]]:
    creditor_id, actor_user_id, import_id = ctx.creditor.id, ctx.actor_user_id, ctx.import_id
    draft = PositionStatus.DRAFT.value if pg else PositionStatus.DRAFT
    stamp, day = _values(now, pg)
    sync = {}
    for service in ctx.services.values():
        state = sync_state.initial_state(publish=not service.draft_first, now=now)
        sync[service.id] = tuple(stamp if state[c] is now else state[c] for c in _SYNC_COLUMNS)
    rows = []
    iupds = new_iupds(ctx.creditor, len(batch))
    for i, data in enumerate(batch):
        amount = data.single.amount_cents if data.single else sum(o.amount_cents for o in data.installments)
        rows.append((creditor_id, data.service_id, debtor_ids[i], iupds[i], data.source, data.external_id,
                     data.subject, draft, amount, 0, day(min(o.due_date for _, _, o in option_lists[i])),
                     actor_user_id, stamp, stamp, import_id, *sync[data.service_id]))
    columns = _POSITION_COLUMNS
    if extra:
        added = sorted({key for more in extra for key in more} - set(columns))
        columns = (*columns, *added)
        index = {name: n for n, name in enumerate(columns)}
        widened = []
        for row, more in zip(rows, extra, strict=True):
            values = [*row, *([None] * len(added))]
            for key, value in more.items():
                values[index[key]] = value
            widened.append(tuple(values))
        rows = widened
    return columns, rows


def _option_rows(ctx: WriteContext, batch: list[PositionInput], position_ids, option_lists, numbers, *, pg: bool):
    """The options' rows (without ids), each option's transfers with its position, and each position's NAVs."""
    creditor_id = ctx.creditor.id
    unpaid = OptionStatus.UNPAID.value if pg else OptionStatus.UNPAID
    _, day = _values(None, pg)
    numbers = iter(numbers)
    rows, option_transfers, navs_of = [], [], []
    for i, data in enumerate(batch):
        navs = []
        position_id = position_ids[i]
        for kind, number, option in option_lists[i]:
            allocated = next(numbers)
            navs.append(allocated.nav)
            rows.append((position_id, creditor_id, kind, number, allocated.iuv, allocated.nav, option.amount_cents,
                         day(option.due_date),
                         option.description or option_description(data.subject, number, len(data.installments)),
                         unpaid, None))
            option_transfers.append((data, option.transfers))
        navs_of.append(navs)
    return rows, option_transfers, navs_of


def _transfer_rows(ctx: WriteContext, option_ids, option_transfers) -> list[tuple]:
    own_code, own_name = ctx.creditor.fiscal_code, ctx.creditor.name  # read once: ORM attributes are slow
    rows = []
    for option_id, (data, transfers) in zip(option_ids, option_transfers, strict=True):
        for index, transfer in enumerate(transfers, start=1):
            code = transfer.beneficiary_fiscal_code
            rows.append((option_id, index, transfer.amount_cents, code,
                         transfer.beneficiary_name or (own_name if code == own_code else ""), transfer.iban,
                         transfer.taxonomy_code, transfer.remittance or data.subject))
    return rows


def _event_rows(ctx: WriteContext, batch: list[PositionInput], position_ids, amounts, navs, *, now: datetime,
                pg: bool) -> list[tuple]:
    """The "created" event of each position (who, when, where from, which notice numbers)."""
    rows = []
    actor, actor_user_id, import_id = ctx.actor, ctx.actor_user_id, ctx.import_id
    stamp, _ = _values(now, pg)
    for i, data in enumerate(batch):
        details = {"source": data.source, "external_id": data.external_id, "amount_cents": amounts[i],
                   "notice_numbers": navs[i], **({"import_id": import_id} if import_id is not None else {})}
        rows.append((position_ids[i], "created", stamp, actor, actor_user_id, json.dumps(details) if pg else details))
    return rows


def _values(now: datetime | None, pg: bool):
    """How the time of the write and dates go into rows: for COPY as their ISO text, made once per value (psycopg
    formatting a datetime in each row cost three times the rest of a position's row); otherwise as they are."""
    if not pg:
        return now, lambda value: value
    texts: dict = {}

    def day(value):
        text = texts.get(value)
        if text is None:
            text = texts[value] = value.isoformat()
        return text

    return (now.isoformat() if now is not None else None), day


def _debtors(session: Session, ctx: WriteContext, batch: list[PositionInput], *, now: datetime,
             pg: bool) -> tuple[list[int], list[tuple], list[dict]]:
    """The debtor row of each position: the shared one (created, or refreshed as ``upsert_debtor`` does), or a
    version of it when the actor does not see every service the debtor has positions in.

    On PostgreSQL the new rows (with their ids) and the refreshes are returned for the caller to write; elsewhere
    they are written here. Under a pipeline the debtors seen by earlier batches are remembered (not looked up
    again) and their refreshes wait for the end of the import, so that each changes once.
    """
    conn = session.connection()
    creditor_id = ctx.creditor.id
    pipeline = ctx.pipeline
    known = pipeline.debtors if pipeline is not None and pipeline.remember_debtors(ctx) else None
    codes = sorted({p.debtor.fiscal_code for p in batch})
    existing: dict[str, dict] = {}
    guarded: set[int] = set()
    lookup = codes if known is None else [code for code in codes if code not in known]
    if pg and lookup:
        existing = {row["fiscal_code"]: row for row in _probe(conn, _SHARED_DEBTORS, codes=lookup,
                                                              creditor=creditor_id)}
    elif lookup:
        for start in range(0, len(lookup), 1000):
            part = lookup[start:start + 1000]
            for row in conn.execute(sa.select(DEBTORS).where(
                    DEBTORS.c.creditor_id == creditor_id, DEBTORS.c.fiscal_code.in_(part),
                    DEBTORS.c.version_of_id.is_(None))).mappings():
                existing[row["fiscal_code"]] = dict(row)
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
    if known is not None:
        for code in codes:
            entry = known.get(code)
            if entry is not None:
                debtor_id, is_guarded, values = entry
                existing[code] = {"id": debtor_id, **dict(zip(_UPDATED, values, strict=True))}
                if is_guarded:
                    guarded.add(debtor_id)
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
            if known is not None:
                known[code] = (row["id"], True, tuple(row[name] for name in _UPDATED))
            continue
        merged = {"kind": typed["kind"], "name": typed["name"], "country": typed["country"],
                  **{name: typed[name] or row[name] for name in _CONTACT}}
        if any(row[name] != value for name, value in merged.items()):
            updates.append({"debtor_id": row["id"], **merged})
        if known is not None:
            known[code] = (row["id"], False, tuple(merged[name] for name in _UPDATED))
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
    copy_rows: list[tuple] = []
    if inserts:
        if pg:
            ids = _ids(conn.connection.driver_connection, "debtors", len(inserts))
            for row, debtor_id in zip(inserts, ids, strict=True):
                row["id"] = debtor_id
            stamp, _ = _values(now, pg)
            copy_rows = [(row["id"], row["creditor_id"], row["fiscal_code"], row["version_of_id"], stamp,
                          *(row[name] for name in _UPDATED)) for row in inserts]
        else:
            ids = _insert_returning(conn, DEBTORS, inserts)
            for row, debtor_id in zip(inserts, ids, strict=True):
                row["id"] = debtor_id
        for row in new_rows:
            result[row["fiscal_code"]] = row["id"]
            if known is not None:
                known[row["fiscal_code"]] = (row["id"], False, tuple(row[name] for name in _UPDATED))
    if updates and known is not None:
        pipeline.refresh_later(updates)
        updates = []
    elif updates and not pg:
        # The keys named as columns become the SET clause of each row's UPDATE.
        conn.execute(sa.update(DEBTORS).where(DEBTORS.c.id == sa.bindparam("debtor_id")), updates)
        updates = []
    ids_of_positions = [version_of_position[i]["id"] if i in version_of_position else result[p.debtor.fiscal_code]
                        for i, p in enumerate(batch)]
    return ids_of_positions, copy_rows, updates


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


_UPDATE_DEBTORS = (
    "UPDATE debtors AS d SET " + ", ".join(f'"{c}" = v."{c}"' for c in _UPDATED)  # noqa: S608 - constant names
    + " FROM unnest(" + ", ".join(["%s::bigint[]"] + ["%s::text[]"] * len(_UPDATED)) + ") AS v(id, "
    + ", ".join(f'"{c}"' for c in _UPDATED) + ") WHERE d.id = v.id AND d.id = ANY(%s::bigint[])")


def _update_debtors(raw, updates: list[dict]) -> None:
    """Refresh many debtors in one statement (arrays unnested) instead of one UPDATE per debtor."""
    ids = [u["debtor_id"] for u in updates]
    # The ids again as an array the planner can count: the debtors are then found by their key, not by a scan of
    # the whole table joined to the unnested rows (whose number the planner does not know).
    raw.execute(_UPDATE_DEBTORS, [ids] + [[u[c] for u in updates] for c in _UPDATED] + [ids], prepare=False)


#: The tables a bulk write grows (their statistics are refreshed as they grow, see :class:`Statistics`).
GROWN = ("debtors", "positions", "payment_options", "transfers", "events")
#: Of those, the tables read by plans cached during the import (the triggers' statements on the new options).
READ_BACK = ("positions", "payment_options")


class Statistics:
    """Keeps the planner's statistics of the tables a large import grows, and reads back, in line with their size.

    An import writes inside one transaction: autovacuum does not see its rows, and the plans made while the tables
    were small (the triggers' cached plans above all, such as the collections' summary reading the options of the
    positions just inserted) stay scans of the whole table while it grows tenfold, which makes the import quadratic.
    Each such table is analysed again (``ANALYZE`` sees the transaction's own rows and invalidates the cached plans)
    whenever what this import wrote into it exceeds what its statistics last counted; on a ledger already much larger
    than the import this never happens. The other tables are only written (COPY) or probed by statements planned
    afresh each time, whose estimates follow the table's current size: analysing them bought nothing.
    """

    def __init__(self):
        self.counted: dict[str, float] | None = None
        #: Rows this import wrote into each table since its statistics were last refreshed.
        self.since = dict.fromkeys(READ_BACK, 0)

    def wrote(self, raw, **counts: int) -> None:
        """Note ``table=rows`` just written (PostgreSQL, psycopg connection ``raw``), and analyse the tables read
        back that doubled since their last statistics."""
        for table, count in counts.items():
            if table in self.since:
                self.since[table] += count
        if self.counted is None:
            self.counted = self._reltuples(raw, READ_BACK)
        stale = [t for t in READ_BACK if self.since[t] >= 1000 and self.since[t] > self.counted.get(t, 0.0)]
        if not stale:
            return
        # A small sample: what the plans need is the size; the full sample cost the server ten times as much.
        # Autovacuum analyses the tables again, fully, once the import is committed.
        raw.execute("SET LOCAL default_statistics_target = 10")
        for table in stale:
            raw.execute(f'ANALYZE "{table}"')
            self.since[table] = 0
        raw.execute("SET LOCAL default_statistics_target TO DEFAULT")
        self.counted.update(self._reltuples(raw, stale))

    @staticmethod
    def _reltuples(raw, tables) -> dict[str, float]:
        return {name: max(tuples, 0.0) for name, tuples in raw.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace", [list(tables)]).fetchall()}


def _ids(raw, table: str, count: int) -> list[int]:
    """``count`` fresh ids from a PostgreSQL table's sequence (its name looked up once, not once per id)."""
    if count == 0:
        return []
    # The sequence looked up once (a plain subquery is flattened and looks it up for every id, which cost the
    # server ten times what nextval does) and one array back instead of a row per id.
    return raw.execute(
        "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq) "
        "SELECT array_agg(nextval(s.seq)) FROM s, generate_series(1, %s)", [table, count]).fetchone()[0]


def _insert_returning(conn, table: sa.Table, rows: list[dict]) -> list[int]:
    """Insert ``rows`` and return their ids in the same order (SQLAlchemy's insertmanyvalues)."""
    if not rows:
        return []
    result = conn.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return list(result.scalars())


def _send(raw, copies: list[Rows], statistics: Statistics | None, counts: dict[str, int]) -> None:
    """``COPY`` each table's rows (in order: the referenced tables first), then keep the statistics in line."""
    for table, columns, rows in copies:
        if not rows:
            continue
        names = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
    if statistics is not None:
        statistics.wrote(raw, **counts)


class Pipeline:
    """A long import's writes on PostgreSQL, overlapped with its Python work.

    A batch's rows are built while the server stores the previous batch's: a writer thread sends them (``COPY``
    waits on the socket without the GIL) on the session's own connection, so everything stays in the import's one
    transaction. psycopg's connection lock keeps the main thread's statements (probes, ids) from mixing with a COPY;
    :meth:`wait` comes first anyway, so that an error of the writer is raised as itself.

    It also remembers the debtors of the import (fiscal code → id, whether they may be refreshed, their values once
    refreshed), up to :attr:`MAX_DEBTORS`: the rows of a debtor in many positions are then looked up once and
    refreshed once, at the end (:meth:`settle`), with their last values, as consecutive ``upsert_debtor`` calls
    would leave them.
    """

    MAX_DEBTORS = 20_000

    def __init__(self, raw, statistics: Statistics | None):
        self.raw = raw
        self.statistics = statistics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-copy")
        self.running: Future | None = None
        self.held: tuple[list[Rows], dict[str, int]] | None = None
        #: fiscal code → (id, guarded, values of _UPDATED once refreshed) of the shared debtors seen so far.
        self.debtors: dict[str, tuple[int, bool, tuple]] = {}
        #: debtor id → the refresh it is owed (the last one wins).
        self.refreshes: dict[int, dict] = {}

    @staticmethod
    def remember_debtors(ctx: WriteContext) -> bool:
        """Whether what a debtor looks like can be remembered between batches: the import only writes positions
        in services the actor sees, so a debtor that may be refreshed stays so."""
        return ctx.visible_service_ids is None or set(ctx.services) <= ctx.visible_service_ids

    def hold(self, copies: list[Rows], counts: dict[str, int]) -> None:
        """Keep a built batch, to be sent by the next :meth:`release` (or :meth:`settle`)."""
        assert self.held is None, "a batch is already held"
        self.held = (copies, counts)

    def release(self) -> None:
        """Send the held batch in the background (after the one being sent, if any)."""
        if self.held is None:
            return
        self.wait()
        copies, counts = self.held
        self.held = None
        self.running = self.executor.submit(_send, self.raw, copies, self.statistics, counts)

    def wait(self) -> None:
        """Until the batch being sent is stored; raises what the writer raised."""
        running, self.running = self.running, None
        if running is not None:
            running.result()

    def make_room(self) -> None:
        """Forget the debtors once there are too many (after storing everything they are owed)."""
        if len(self.debtors) >= self.MAX_DEBTORS:
            self.settle()

    def refresh_later(self, updates: list[dict]) -> None:
        for update in updates:
            self.refreshes[update["debtor_id"]] = update

    def settle(self) -> None:
        """Store everything: the held batch, the debtors' refreshes; then forget the debtors (the database is what
        the ORM reads next)."""
        self.release()
        self.wait()
        if self.refreshes:
            _update_debtors(self.raw, list(self.refreshes.values()))
            self.refreshes = {}
        self.debtors = {}

    def close(self) -> None:
        """Stop the writer (after what it is sending, whose error is not raised: another one is on its way)."""
        with contextlib.suppress(Exception):
            self.wait()
        self.executor.shutdown()


@contextlib.contextmanager
def pipelined(session: Session, ctx: WriteContext) -> Iterator[None]:
    """Within the block, :func:`write_new_positions` overlaps its batches with the server's work (PostgreSQL);
    everything is stored when the block ends. ``ctx.pipeline`` is also what callers :func:`wait` on before their own
    statements."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        yield
        return
    ctx.pipeline = Pipeline(conn.connection.driver_connection, ctx.statistics)
    try:
        yield
        ctx.pipeline.settle()
    finally:
        ctx.pipeline.close()
        ctx.pipeline = None


def wait(ctx: WriteContext) -> None:
    """Before a statement of the caller's own: the batch being sent is stored (its error raised, if any)."""
    if ctx.pipeline is not None:
        ctx.pipeline.wait()


def settle(ctx: WriteContext) -> None:
    """Before reading positions or debtors through the ORM: everything written so far is stored."""
    if ctx.pipeline is not None:
        ctx.pipeline.settle()


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
    # COPY takes text: JSON as its text, enums as their stored value.
    converted = {c for c in columns if isinstance(table.c[c].type, (sa.JSON, sa.Enum))}
    tuples = [tuple(_text(row[c]) if c in converted else row[c] for c in columns) for row in rows]
    _send(conn.connection.driver_connection, [(table.name, tuple(columns), tuples)], None, {})


def _text(value):
    if isinstance(value, enum.Enum):
        return value.value
    return None if value is None else json.dumps(value)
