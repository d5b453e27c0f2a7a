"""The job functions. Each takes the session and plain ids, calls one service, and returns a short summary.

The :func:`~portal.jobs.registry.task` decorator registers each (queue, timeout, time-to-live in the queue,
retries, Italian label, kind, progress, period) and turns it into the runner RQ imports by dotted path
(``portal.jobs.tasks.sync_position``): it opens an app context, commits after the call (or rolls back and re-raises,
so RQ retries), and keeps the job's :class:`~portal.jobs.models.JobRecord` up to date.
"""

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal.jobs.models import JobRecord
from portal.jobs.queue import purge_records
from portal.jobs.registry import Outcome, task
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)


def gpd_client():
    """The GPD client for the current app's settings."""
    from portal.pagopa.gpd import GPDClient

    return GPDClient.from_config(current_app.config)


# --- pagoPA synchronisation ----------------------------------------------------------------------------------------


@task("sync", label="Sincronizzazione di una posizione con pagoPA", kind="pagopa",
      timeout=120, ttl=6 * 3600, retry_max=3, retry_intervals=(10, 60, 300))
def sync_position(session: Session, position_id: int):
    """Converge one position with GPD (create, update, invalidate or delete)."""
    from portal.pagopa.sync import sync_position as converge

    return converge(session, int(position_id), gpd_client())


@task("sync", label="Pubblicazione in blocco su pagoPA", kind="pagopa", reports_progress=True,
      timeout=600, ttl=6 * 3600, retry_max=2, retry_intervals=(30, 300))
def publish_batch(session: Session, *position_ids: int):
    """Publish never-published positions in GPD bulk calls (≤100 each)."""
    from portal.pagopa.sync import publish_batch as publish

    return publish(session, [int(i) for i in position_ids], gpd_client())


@task("sync", label="Sincronizzazione con pagoPA delle posizioni in attesa", kind="pagopa", every=30,
      timeout=300, ttl=600, retry_max=0)
def sync_sweep(session: Session, limit: int | None = None):
    """Hand every due, unconverged position to a sync job (periodic)."""
    from portal.ledger.sync_state import sweep

    return sweep(session, limit=int(limit or current_app.config.get("SYNC_SWEEP_LIMIT") or 5000))


#: How far back a receipts poll looks before the start of the last successful one (clock skew, slow indexing).
RECEIPTS_POLL_MARGIN = timedelta(hours=1)
#: How far back the first poll (or one after a long outage) looks.
RECEIPTS_POLL_FIRST_WINDOW = timedelta(days=2)


@task("default", label="Ricevute di pagamento da pagoPA (recupero di quelle non ricevute)", kind="pagopa",
      every=5 * 60, timeout=600, ttl=600, retry_max=0)
def poll_receipts(session: Session):
    """Fetch, for every creditor, receipts pagoPA has but we did not get by paSendRT (GPD receipts API).

    The window starts an hour before the start of the last successful poll (two days back the first time).
    """
    from portal.ledger.models import Creditor
    from portal.pagopa.receipt_poller import poll_receipts as poll
    from portal.pagopa.receipts_api import ReceiptsClient

    now = utcnow()
    last = session.scalar(sa.select(sa.func.max(JobRecord.started_at))
                          .where(JobRecord.kind == "poll_receipts", JobRecord.status == "done"))
    since = now - RECEIPTS_POLL_FIRST_WINDOW
    if last:
        since = max(last - RECEIPTS_POLL_MARGIN, since)
    client = ReceiptsClient.from_config(current_app.config)
    stored = 0
    for creditor in session.scalars(sa.select(Creditor).order_by(Creditor.id)).all():
        stored += poll(session, creditor, client, since=since)
    return Outcome(f"{stored} ricevute registrate (da {since:%Y-%m-%d %H:%M} UTC)", idle=stored == 0)


def fdr_client():
    """The FdR (reporting flows) client for the current app's settings."""
    from portal.pagopa.fdr import FdrClient

    return FdrClient.from_config(current_app.config)


def reconcile_flows(session: Session):
    """For every creditor: the new reporting flows and revisions, reconciled; unreported receipts flagged."""
    from portal.ledger.models import Creditor
    from portal.pagopa.fdr_sync import SyncResult, sync_flows

    days = int(current_app.config.get("FDR_UNREPORTED_DAYS") or 0)
    client = fdr_client()
    total = SyncResult()
    for creditor_id in session.scalars(sa.select(Creditor.id).order_by(Creditor.id)).all():
        result = sync_flows(session, session.get(Creditor, creditor_id), client,
                            unreported_after=timedelta(days=days) if days else None)
        for name in ("listed", "recorded", "rejected", "matched", "anomalies", "not_reported"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
        total.reported_positions += result.reported_positions
    return total


@task("default", label="Flussi di rendicontazione da pagoPA (riconciliazione)", kind="pagopa", every=30 * 60,
      timeout=1800, ttl=1800, retry_max=0)
def sync_reporting_flows(session: Session):
    """Download and reconcile the reporting flows (FdR) published since the last run (periodic)."""
    total = reconcile_flows(session)
    return Outcome(total.summary(), idle=total.recorded == 0 and total.not_reported == 0)


@task("default", label="Invio dei webhook ai sistemi del Comune", kind="webhooks", every=60,
      timeout=120, ttl=600, retry_max=0, lingers=True)
def deliver_webhooks(session: Session, lane: int = 0):
    """Send every due webhook delivery (asked for after each change, and every minute for the retries); ``lane``
    1, 2, ... are the extra runs a backlog asks for, so that more workers share it. It lingers: its presence tells
    the changes committed meanwhile that it will look (:mod:`portal.jobs.lingering`)."""
    from portal.jobs.queue import presence
    from portal.webhooks.delivery import DeliverySettings, deliver_due

    counts = deliver_due(session, DeliverySettings.from_config(current_app.config), lane=int(lane),
                         presence=presence())
    sent = sum(counts.values())
    return Outcome(f"{counts['delivered']} consegnati, {counts['pending']} da ritentare, {counts['failed']} falliti",
                   idle=sent == 0)


@task("default", label="Pulizia dello storico delle attività", kind="maintenance", every=24 * 3600,
      timeout=600, ttl=3600, retry_max=0)
def purge_job_records(session: Session):
    """Delete old job rows (periodic jobs' successful runs after a day, others after a week)."""
    from portal.jobs.periodic import PERIODIC_JOBS

    count = purge_records(session, periodic_kinds=[p.task for p in PERIODIC_JOBS])
    return Outcome(f"{count} righe eliminate", idle=count == 0)


@task("default", label="Aggiornamento dei totali del cruscotto", kind="maintenance", every=60,
      timeout=600, ttl=120, retry_max=0)
def compact_position_totals(session: Session):
    """Fold the dashboard totals' delta rows (one row per key again): the positions' and the collections'."""
    from portal.ledger import cashflow, totals

    folded = totals.compact(session) + cashflow.compact(session)
    return Outcome(f"{folded} righe dei totali accorpate", idle=folded == 0)


# --- Bulk uploads ----------------------------------------------------------------------------------------------


def import_settings():
    """The bulk-upload settings of the current app."""
    from portal.imports.services import ImportSettings

    return ImportSettings.from_config(current_app.config)


def _import_scope(session: Session, import_id: int) -> set[int] | None:
    """The services the officer who uploaded the import sees (``None``: all, or no officer)."""
    from portal.accounts.models import User
    from portal.imports.models import Import

    imp = session.get(Import, import_id)
    user = session.get(User, imp.created_by_id) if imp is not None and imp.created_by_id else None
    return user.service_scope() if user is not None else None


@task("imports", label="Importazione: verifica del file", kind="imports", reports_progress=True,
      timeout=3600, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def import_check(session: Session, import_id: int):
    """Dry run of an uploaded file: figures and row errors, nothing imported."""
    from portal.imports.services import run_dry_run

    imp = run_dry_run(session, int(import_id), settings=import_settings(),
                      visible_service_ids=_import_scope(session, int(import_id)))
    return (f"{imp.rows_total} righe: {imp.positions_new} posizioni nuove, {imp.positions_updated} da aggiornare, "
            f"{imp.positions_unchanged} invariate, {imp.error_count} errori")


@task("imports", label="Importazione delle posizioni", kind="imports", reports_progress=True,
      timeout=3 * 3600, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def import_run(session: Session, import_id: int):
    """Write a confirmed import's positions, all or nothing."""
    from portal.imports.services import run_import

    imp = run_import(session, int(import_id), settings=import_settings(),
                     visible_service_ids=_import_scope(session, int(import_id)))
    if imp.status == "failed":
        return f"non riuscita: {imp.message}"
    return f"{imp.imported} posizioni scritte ({imp.positions_new} nuove, {imp.positions_updated} aggiornate)"


@task("imports", label="Importazione: annullamento delle posizioni", kind="imports", reports_progress=True,
      timeout=3 * 3600, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def import_cancel_positions(session: Session, import_id: int, reason: str, actor: str, user_id: int | None = None):
    """Cancel every still cancellable position an import created (``user_id`` 0: no officer)."""
    from portal.imports.services import cancel_positions

    count = cancel_positions(session, int(import_id), reason=reason, actor=actor,
                             actor_user_id=int(user_id) if user_id else None)
    return f"{count} posizioni annullate"


# --- Bill runs and notice e-mails ----------------------------------------------------------------------------------


def billrun_settings():
    """The bill-run settings of the current app."""
    from portal.notices.billrun import BillRunSettings

    return BillRunSettings.from_config(current_app.config)


@task("notices", label="Bollettazione: selezione delle posizioni", kind="notices",
      timeout=3600, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def billrun_prepare(session: Session, run_id: int):
    """Freeze a bill run's selection in envelope order and ask for one job per chunk."""
    from portal.notices.billrun import prepare

    return prepare(session, int(run_id), billrun_settings())


@task("notices", label="Bollettazione: stampa di un blocco di avvisi", kind="notices", reports_progress=True,
      timeout=1800, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def billrun_chunk(session: Session, run_id: int, number: int):
    """Render one chunk of a bill run (the last one asks for the package)."""
    from portal.notices.billrun import render_chunk

    return render_chunk(session, int(run_id), int(number), billrun_settings())


@task("notices", label="Bollettazione: pacchetto per la stampa", kind="notices", reports_progress=True,
      timeout=3 * 3600, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def billrun_finish(session: Session, run_id: int):
    """Write a bill run's ZIP and mark its positions "notice issued"."""
    from portal.notices.billrun import finish

    return finish(session, int(run_id), billrun_settings())


@task("default", label="Ripresa dei blocchi di bollettazione rimasti senza lavoro", kind="notices", every=5 * 60,
      timeout=300, ttl=600, retry_max=0)
def billrun_sweep(session: Session):
    """Re-ask for the missing chunks of bill runs still working (a lost worker's chunk is rendered again)."""
    from portal.notices.billrun import resume_active

    active = resume_active(session)
    return Outcome(f"{active} bollettazioni in corso", idle=active == 0)


@task("default", label="Rimozione dei pacchetti di bollettazione scaduti", kind="maintenance", every=24 * 3600,
      timeout=1800, ttl=3600, retry_max=0)
def purge_bill_run_files(session: Session):
    """Remove the packages of bill runs finished more than NOTICES_RETENTION_DAYS ago."""
    from portal.notices.billrun import purge_files

    removed = purge_files(session, billrun_settings())
    return Outcome(f"file di {removed} bollettazioni rimossi", idle=removed == 0)


def mailer():
    """A mailer for the current app's settings."""
    from portal.mail import Mailer, MailSettings

    return Mailer(MailSettings.from_config(current_app.config))


@task("mail", label="Bollettazione: invio degli avvisi per e-mail", kind="mail", reports_progress=True,
      timeout=3600, ttl=24 * 3600, retry_max=3, retry_intervals=(60, 600, 3600))
def billrun_mail(session: Session, run_id: int, number: int):
    """E-mail the notices of one chunk of a finished bill run to the debtors who have an address."""
    from portal.notices.delivery import deliver_bill_run_chunk

    with mailer() as m:
        return deliver_bill_run_chunk(session, int(run_id), int(number), m)


@task("mail", label="Invio di un avviso per e-mail", kind="mail",
      timeout=120, ttl=24 * 3600, retry_max=3, retry_intervals=(60, 600, 3600))
def send_notice_email(session: Session, delivery_id: int):
    """Send one notice e-mail an officer asked for."""
    from portal.notices.delivery import deliver

    with mailer() as m:
        return deliver(session, int(delivery_id), m)


# --- Citizens' portal ----------------------------------------------------------------------------------------------


def citizen_receipt_link(token: str) -> str:
    """The signed, expiring link to a citizen's receipt, on the portal's public address."""
    from portal.citizen_payments import links

    signed = links.sign(current_app.config["SECRET_KEY"], token)
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/ricevuta/{signed}"


@task("mail", label="Invio del link alla ricevuta di un pagamento online", kind="mail",
      timeout=120, ttl=24 * 3600, retry_max=3, retry_intervals=(60, 600, 3600))
def send_citizen_receipt(session: Session, payment_id: int):
    """E-mail the receipt link of one paid citizen payment (once)."""
    from portal.citizen_payments import links
    from portal.citizen_payments.mailing import send_receipt_link

    with mailer() as m:
        return send_receipt_link(session, int(payment_id), m, citizen_receipt_link,
                                 days=links.LINK_MAX_AGE_SECONDS // 86400)


@task("default", label="Link alle ricevute dei pagamenti online ancora da inviare", kind="mail", every=60,
      timeout=300, ttl=120, retry_max=0)
def citizen_receipts_sweep(session: Session):
    """Ask for the receipt e-mail of every recent citizen payment that was paid and not mailed yet."""
    from portal import outbox
    from portal.citizen_payments.mailing import MAIL_TASK, due_for_mail
    from portal.citizen_payments.models import CitizenPayment
    from portal.citizen_payments.status import state_of

    asked = 0
    for payment_id in due_for_mail(session):
        payment = session.get(CitizenPayment, payment_id)
        if state_of(session, payment).paid:
            outbox.schedule(session, MAIL_TASK, payment_id, job_id=f"citizen-receipt-{payment_id}",
                            creditor_id=payment.creditor_id)
            asked += 1
    return Outcome(f"{asked} ricevute da inviare", idle=asked == 0)


@task("default", label="Annullamento dei pagamenti online abbandonati", kind="maintenance", every=3600,
      timeout=600, ttl=3600, retry_max=0)
def cancel_abandoned_citizen_positions(session: Session):
    """Cancel the positions of spontaneous payments never paid after ``CITIZEN_ABANDONED_DAYS`` (0: never)."""
    from portal.citizen_payments.abandoned import cancel_abandoned

    days = int(current_app.config.get("CITIZEN_ABANDONED_DAYS") or 0)
    if days <= 0:
        return Outcome("disattivato (CITIZEN_ABANDONED_DAYS = 0)", idle=True)
    cancelled = cancel_abandoned(session, days=days, now=utcnow())
    return Outcome(f"{len(cancelled)} posizioni annullate", idle=not cancelled)


@task("default", label="Pulizia dei contatori dei limiti di richieste", kind="maintenance", every=3600,
      timeout=300, ttl=600, retry_max=0)
def purge_rate_counters(session: Session):
    """Delete the rate-limit counters of windows older than a day."""
    from portal import ratelimit

    removed = ratelimit.purge(session.get_bind())
    return Outcome(f"{removed} contatori eliminati", idle=removed == 0)


# --- Collections: overdue credits, reminders, litigation ---------------------------------------------------------


@task("default", label="Posizioni scadute: controllo giornaliero", kind="collections", every=24 * 3600,
      timeout=1800, ttl=3600, retry_max=1, retry_intervals=(300,))
def overdue_scan(session: Session):
    """Mark expired the unpaid positions past their due date plus the service's grace days (daily)."""
    from datetime import date

    from portal.collections.overdue import scan

    result = scan(session, today=date.today())
    return Outcome(str(result), idle=result.count == 0)


@task("default", label="Riepilogo giornaliero delle posizioni scadute agli operatori", kind="collections",
      every=24 * 3600, timeout=1800, ttl=3600, retry_max=1, retry_intervals=(600,))
def overdue_digest(session: Session):
    """E-mail each officer who asked for it what is overdue in their services (daily)."""
    from datetime import date

    from portal.collections.digest import send_digests

    url = f"{current_app.config['PUBLIC_URL'].rstrip('/')}/officer/"
    with mailer() as m:
        return send_digests(session, m, today=date.today(), dashboard_url=url)


@task("default", label="Solleciti e contenzioso: lavorazione di un blocco del lotto", kind="collections",
      reports_progress=True, timeout=1800, ttl=24 * 3600, retry_max=2, retry_intervals=(30, 300))
def collections_batch(session: Session, batch_id: int):
    """Process the next chunk of a reminder or litigation batch (it asks for the following chunk itself)."""
    from datetime import date

    from portal.collections.batches import run_chunk

    try:
        client = gpd_client()
    except ValueError:  # no pagoPA configured: positions on pagoPA are left to retry
        client = None
    return run_chunk(session, int(batch_id), today=date.today(), client=client)


@task("notices", label="Solleciti e contenzioso: invio delle lettere e pacchetto di stampa", kind="collections",
      timeout=3 * 3600, ttl=24 * 3600, retry_max=2, retry_intervals=(60, 600))
def collections_finish(session: Session, batch_id: int):
    """Send a finished batch's letters by PEC or e-mail and write the print package of the others."""
    from pathlib import Path

    from portal.collections.delivery import finish

    with mailer() as m:
        return finish(session, int(batch_id), storage_dir=Path(current_app.config["NOTICES_DIR"]) / "collections",
                      mailer=m)
