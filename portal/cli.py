"""Command-line entry points: ``flask demo load``, ``flask positions export``, ``flask users create``,
``flask rq worker|scheduler|status``, ``flask sync sweep|status``, ``flask notices pdf|billrun``, ``flask doctor``."""

import click
from flask.cli import AppGroup, with_appcontext

from portal.extensions import db

demo_cli = AppGroup("demo", help="Dati dimostrativi.")
positions_cli = AppGroup("positions", help="Posizioni debitorie.")
users_cli = AppGroup("users", help="Utenti del back office.")
creditors_cli = AppGroup("creditors", help="Enti creditori (la prima configurazione di un'installazione).")


@demo_cli.command("load")
@click.option("--positions", "position_count", default=1000, show_default=True, help="Posizioni da creare.")
@click.option("--if-empty", is_flag=True, help="Non fare nulla se il database contiene già un ente.")
def demo_load(position_count: int, if_empty: bool):
    """Load the demo Comune, its services, 200 debtors and positions in every state; print the logins."""
    from flask import current_app

    from portal import demo

    if current_app.config["PAYBOX_ENV"] == "production":
        raise click.ClickException("I dati dimostrativi non si caricano in produzione (PAYBOX_ENV=production): "
                                   "creano utenti con password note. Creare gli utenti con `flask users create`.")
    try:
        result = demo.load(db.session, positions=position_count, if_empty=if_empty)
    except demo.DemoAlreadyLoaded as exc:
        raise click.ClickException(str(exc)) from exc
    if result is None:
        click.echo("Il database contiene già dei dati: demo non ricaricata.")
    else:
        db.session.commit()
        click.echo(f"Demo caricata: {result.creditor.name}, {result.position_count} posizioni.")
    _echo_logins(demo.logins())


def _echo_logins(logins) -> None:
    from flask import current_app

    url = current_app.config["PUBLIC_URL"].rstrip("/") + "/officer/"
    click.echo(f"Accessi dimostrativi al back office, {url} (utente / password / ruolo):")
    for username, password, role in logins:
        click.echo(f"  {username:<14} {password:<22} {role}")


@positions_cli.command("export")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--layout", type=click.Choice(["machine", "it"]), default="machine", show_default=True,
              help="machine: colonne documentate per altri sistemi; it: intestazioni italiane, ';', euro, gg/mm/aaaa.")
def positions_export(path: str, layout: str):
    """Write every position, one row per payment option, to a CSV file."""
    from portal.reports import exports

    with open(path, "w", newline="", encoding="utf-8") as out:
        count = exports.write_all_positions_csv(db.session, out, layout=exports.LAYOUTS[layout])
    click.echo(f"{count} righe scritte in {path}")


@creditors_cli.command("create")
@click.argument("fiscal_code")
@click.option("--name", required=True, help="Denominazione dell'ente (es. «Comune di Valleverde»).")
@click.option("--segregation-code", required=True, help="Codice di segregazione assegnato da pagoPA (due cifre).")
@click.option("--iban", required=True, help="IBAN del conto di tesoreria registrato su pagoPA.")
@click.option("--broker-id", help="Codice fiscale dell'intermediario tecnologico.")
@click.option("--station-id", help="Codice della stazione pagoPA.")
def creditors_create(fiscal_code: str, name: str, segregation_code: str, iban: str, broker_id: str | None,
                     station_id: str | None):
    """Create an Ente with its treasury account, the first step of a new installation (then `users create`)."""
    from portal.ledger.errors import ValidationFailed
    from portal.ledger.identifiers import IdentifierError
    from portal.settings import services as settings_svc

    try:
        creditor = settings_svc.create_creditor(db.session, fiscal_code=fiscal_code, name=name,
                                                segregation_code=segregation_code, broker_id=broker_id,
                                                station_id=station_id)
        settings_svc.add_account(db.session, creditor, iban=iban, label="Tesoreria")
    except (IdentifierError, ValidationFailed, ValueError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Ente «{creditor.name}» ({creditor.fiscal_code}) creato; servizi e utenti dal back office o con "
               "`users create`.")


@users_cli.command("create")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Nome e cognome.")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), default="operator", show_default=True)
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se ce n'è più di uno).")
@click.password_option(help="Password (almeno 10 caratteri).")
def users_create(username: str, full_name: str, role: str, creditor_fiscal_code: str | None, password: str):
    """Create a back-office user."""

    from portal.accounts.services import AccountError, create_user
    from portal.settings.services import only_creditor

    creditor = only_creditor(db.session, creditor_fiscal_code)
    if creditor is None:
        raise click.ClickException("Indicare con --creditor uno degli enti configurati.")
    try:
        create_user(db.session, creditor, username=username, full_name=full_name, password=password, role=role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Utente {username} creato.")


rq_cli = AppGroup("rq", help="Code di lavoro (RQ su Redis): worker e scheduler delle attività periodiche.")
sync_cli = AppGroup("sync", help="Sincronizzazione delle posizioni con pagoPA (GPD).")


def _rq_backend():
    from flask import current_app

    from portal.jobs.queue import get_backend

    backend = get_backend(current_app._get_current_object())
    if backend.mode != "rq":
        raise click.ClickException("REDIS_URL non è configurato: senza Redis le attività girano nel processo web.")
    return backend


@rq_cli.command("worker")
@click.argument("queue_names", nargs=-1)
@click.option("--queues", "-q", "queue_options", multiple=True,
              help="Coda da servire (ripetibile); predefinite: tutte.")
@click.option("--burst", is_flag=True, help="Termina quando le code sono vuote.")
@click.option("--name", help="Nome del worker (predefinito: host e pid).")
@click.option("--with-scheduler/--without-scheduler", default=True, show_default=True,
              help="Esegui anche lo scheduler di RQ (necessario per i tentativi ripetuti a intervalli).")
def rq_worker(queue_names, queue_options, burst: bool, name: str | None, with_scheduler: bool):
    """Start an RQ worker on the given queues (in priority order), with this app's Redis and settings."""
    import logging
    import os

    from flask import current_app
    from rq import Queue, Worker

    from portal.jobs.queue import QUEUES, CurrentJobFilter, use_worker_app

    backend = _rq_backend()
    # The jobs (and RQ's failure callbacks) run in this app: the worker hands it over, nothing builds another.
    use_worker_app(current_app._get_current_object())
    names = list(queue_names) + [q for option in queue_options for q in option.split(",") if q]
    names = names or list(QUEUES)
    unknown = sorted(set(names) - set(QUEUES))
    if unknown:
        raise click.ClickException(f"code sconosciute: {', '.join(unknown)} (disponibili: {', '.join(QUEUES)})")
    # RQ forks a work horse per job: what the worker imports now, every horse has for free (the notice renderer
    # and its fonts took about half a second to import in each bill-run chunk's horse).
    import portal.jobs.tasks  # noqa: F401
    import portal.notices.billrun  # noqa: F401
    import portal.notices.delivery  # noqa: F401

    job_filter = CurrentJobFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(job_filter)
    # Each job runs in a forked child: it must open its own database connections, never share the parent's.
    engines = list(db.engines.values())
    os.register_at_fork(after_in_child=lambda: [engine.dispose(close=False) for engine in engines])
    # Its work horses count their metrics into this worker's files (see portal.metrics.process_identifier).
    from portal.metrics import RQ_WORKER_PID_ENV

    os.environ[RQ_WORKER_PID_ENV] = str(os.getpid())
    queues = [Queue(queue_name, connection=backend.redis) for queue_name in names]
    worker = Worker(queues, connection=backend.redis, name=name)
    click.echo(f"Worker {worker.name} sulle code: {', '.join(names)}")
    worker.work(burst=burst, with_scheduler=with_scheduler)


@rq_cli.command("scheduler")
@click.option("--interval", default=1.0, show_default=True, help="Secondi tra due controlli.")
def rq_scheduler(interval: float):
    """Enqueue the periodic jobs when due (several schedulers may run: a Redis lock lets one act)."""
    import signal

    from portal.jobs.periodic import PERIODIC_JOBS, RedisScheduler

    backend = _rq_backend()
    scheduler = RedisScheduler(backend.redis, interval=interval)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop.set())
    for job in PERIODIC_JOBS:
        click.echo(f"  {job.task:<20} ogni {job.every:>6} s  {job.description}")
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.stop.set()


@rq_cli.command("status")
def rq_status():
    """Show the length of each queue, the workers, and the failed jobs."""
    from rq import Worker
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    from portal.jobs.queue import QUEUES

    backend = _rq_backend()
    for queue_name in QUEUES:
        queue = backend.queue(queue_name)
        started = StartedJobRegistry(queue=queue).count
        failed = FailedJobRegistry(queue=queue).count
        click.echo(f"  {queue_name:<10} in coda {queue.count:>6}   in corso {started:>4}   fallite {failed:>5}")
    for worker in Worker.all(connection=backend.redis):
        click.echo(f"  worker {worker.name}: {worker.get_state()} ({', '.join(worker.queue_names())})")


@sync_cli.command("sweep")
@click.option("--limit", default=5000, show_default=True, help="Posizioni al massimo.")
@click.option("--inline", is_flag=True, help="Sincronizza subito in questo processo invece di accodare i lavori.")
def sync_sweep(limit: int, inline: bool):
    """Hand every due, unconverged position to a sync job now (what the periodic sweep does every 30 s)."""
    from portal.jobs.tasks import gpd_client
    from portal.ledger.sync_state import sweep
    from portal.pagopa import sync

    result = sweep(db.session, limit=limit, schedule=not inline)
    db.session.commit()
    if not inline:
        click.echo(f"Accodate: {result}.")
        return
    client = gpd_client()
    for batch in result.batches:
        click.echo(f"Blocco di {len(batch)}: {sync.publish_batch(db.session, batch, client)}")
        db.session.commit()
    for position_id in result.singles:
        click.echo(str(sync.sync_position(db.session, position_id, client)))
        db.session.commit()
    click.echo(f"Fatto: {result}.")


@sync_cli.command("status")
def sync_status():
    """Count positions waiting for pagoPA, due now, and refused by pagoPA."""
    from portal.ledger.sync_state import sync_summary

    summary = sync_summary(db.session)
    click.echo(f"In attesa di pagoPA: {summary.pending}; da tentare ora: {summary.due}; "
               f"con errore: {summary.failing}.")


fdr_cli = AppGroup("fdr", help="Flussi di rendicontazione pagoPA (FdR).")


@fdr_cli.command("sync")
def fdr_sync():
    """Fetch and reconcile the new reporting flows now (what the periodic job does every 30 minutes)."""
    from portal.jobs.tasks import reconcile_flows

    click.echo(reconcile_flows(db.session).summary() + ".")
    db.session.commit()


webhooks_cli = AppGroup("webhooks", help="Webhook verso i sistemi del Comune.")


@webhooks_cli.command("add")
@click.argument("url")
@click.option("--secret", help="Segreto per la firma (almeno 16 caratteri); senza, ne viene generato uno.")
@click.option("--event", "events", multiple=True, help="Evento (ripetibile; nessuno: tutti).")
@click.option("--service", "service_codes", multiple=True, help="Codice di un servizio (ripetibile; nessuno: tutti).")
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se ce n'è più di uno).")
def webhooks_add(url: str, secret: str | None, events: tuple[str, ...], service_codes: tuple[str, ...],
                 creditor_fiscal_code: str | None):
    """Add a subscriber; its secret is printed on the last line (shown only now)."""
    from flask import current_app

    from portal.api.cli import _creditor
    from portal.webhooks import services

    try:
        subscriber, secret = services.add_subscriber(
            db.session, _creditor(creditor_fiscal_code), url=url, events=list(events), secret=secret,
            service_codes=[c.upper() for c in service_codes],
            allow_private=bool(current_app.config.get("WEBHOOKS_ALLOW_PRIVATE")))
    except services.SubscriberError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"Destinatario {subscriber.id} aggiunto: {url}")
    click.echo(secret)


@webhooks_cli.command("deliver")
@click.option("--seconds", default=50.0, show_default=True, help="Per quanto tempo al massimo.")
def webhooks_deliver(seconds: float):
    """Send the due deliveries now, in this process (what the delivery job does)."""
    from flask import current_app

    from portal.webhooks.delivery import DeliverySettings, deliver_due

    counts = deliver_due(db.session, DeliverySettings.from_config(current_app.config), max_seconds=seconds)
    click.echo(f"Consegnati {counts['delivered']}, da ritentare {counts['pending']}, falliti {counts['failed']}.")


payments_cli = AppGroup("payments", help="Pagamenti incassati (esportazioni per la ragioneria).")


@payments_cli.command("export")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--from", "day_from", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="AAAA-MM-GG")
@click.option("--to", "day_to", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="AAAA-MM-GG")
@click.option("--by", type=click.Choice(["paid", "regulation"]), default="paid", show_default=True,
              help="Per data di pagamento o di regolamento (bonifico al tesoriere).")
@click.option("--layout", type=click.Choice(["it", "machine"]), default="it", show_default=True)
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se ce n'è più di uno).")
def payments_export(path: str, day_from, day_to, by: str, layout: str, creditor_fiscal_code: str | None):
    """Every transfer paid in the period, with its receipt and flow, and totals per service and beneficiary."""
    from portal.api.cli import _creditor
    from portal.reports import exports, payments

    creditor = _creditor(creditor_fiscal_code)
    rows = payments.payment_rows(db.session, creditor.id, day_from.date(), day_to.date(), by=by)
    chosen = payments.LAYOUTS[layout]
    if path.lower().endswith(".xlsx"):
        with open(path, "wb") as out:
            count = exports.write_xlsx(out, rows, layout=chosen)
    elif path.lower().endswith(".csv"):
        with open(path, "w", encoding="utf-8", newline="") as out:
            count = exports.write_csv(out, rows, layout=chosen)
    else:
        raise click.ClickException("Il file deve terminare con .csv o .xlsx.")
    click.echo(f"{count} righe scritte in {path}.")


notices_cli = AppGroup("notices", help="Avvisi di pagamento pagoPA (PDF).")


def _one_row(model, query, creditor_fiscal_code: str | None, *, missing: str, ambiguous: str):
    """The one row of ``query`` (of the Ente ``creditor_fiscal_code`` when given), or a clear CLI error."""
    from portal.ledger.models import Creditor

    if creditor_fiscal_code:
        query = query.join(Creditor, Creditor.id == model.creditor_id).where(
            Creditor.fiscal_code == creditor_fiscal_code)
    rows = db.session.scalars(query).all()
    if not rows:
        raise click.ClickException(missing)
    if len(rows) > 1:
        raise click.ClickException(f"{ambiguous}: indicare l'ente con --creditor.")
    return rows[0]


@notices_cli.command("pdf")
@click.argument("nav")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--creditor", "creditor_fiscal_code",
              help="Codice fiscale dell'ente (se il codice avviso è di più enti).")
def notices_pdf(nav: str, path: str, creditor_fiscal_code: str | None):
    """Write the notice PDF of the position that has the notice number NAV (spaces allowed) to PATH."""
    import sqlalchemy as sa

    from portal.ledger.models import Creditor, PaymentOption
    from portal.ledger.notice_numbers import normalize_nav
    from portal.notices import NoticeError, render_notice

    option = _one_row(PaymentOption, sa.select(PaymentOption).where(PaymentOption.notice_number == normalize_nav(nav)),
                      creditor_fiscal_code, missing=f"Nessuna posizione con codice avviso {nav}.",
                      ambiguous="Il codice avviso è di più enti")
    position = option.position
    try:
        pdf = render_notice(position, creditor=db.session.get(Creditor, position.creditor_id))
    except NoticeError as exc:
        raise click.ClickException(str(exc)) from exc
    with open(path, "wb") as out:
        out.write(pdf)
    click.echo(f"Avviso scritto in {path} ({len(pdf)} byte).")


@notices_cli.command("billrun")
@click.option("--service", "service_code", required=True, help="Codice del servizio (es. TARI).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Dove scrivere il pacchetto ZIP.")
@click.option("--mode", type=click.Choice(["merged", "envelopes"]), default="merged", show_default=True,
              help="merged: un PDF per blocco con le pagine di ogni busta nell'indice; envelopes: un PDF per busta.")
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se il servizio è di più enti).")
@click.option("--status", help="Solo le posizioni in questo stato (published, expired, ...).")
@click.option("--due-from", type=click.DateTime(["%Y-%m-%d"]), help="Scadenza dal (AAAA-MM-GG).")
@click.option("--due-to", type=click.DateTime(["%Y-%m-%d"]), help="Scadenza al (AAAA-MM-GG).")
@click.option("--include-issued", is_flag=True, help="Ristampa anche gli avvisi già emessi.")
@click.option("--title", help="Descrizione della bollettazione.")
@click.option("--email", "send_email", is_flag=True, help="Invia poi ogni avviso all'e-mail del debitore.")
def notices_billrun(service_code, out_path, mode, creditor_fiscal_code, status, due_from, due_to, include_issued,
                    title, send_email):
    """Run a bill run of SERVICE here (all chunks in this process) and write its ZIP package to OUT."""
    import shutil

    import sqlalchemy as sa
    from flask import current_app

    from portal.jobs.tasks import mailer
    from portal.ledger.models import Creditor, Service
    from portal.ledger.queries import PositionFilter
    from portal.ledger.status import PositionStatus
    from portal.notices import billrun
    from portal.notices.delivery import deliver_bill_run_chunk

    service = _one_row(Service, sa.select(Service).where(Service.code == service_code), creditor_fiscal_code,
                       missing=f"Nessun servizio con codice {service_code}.", ambiguous="Il servizio è di più enti")
    try:
        flt = PositionFilter(service_id=service.id, status=PositionStatus(status) if status else None,
                             due_from=due_from.date() if due_from else None, due_to=due_to.date() if due_to else None)
    except ValueError as exc:
        raise click.ClickException(f"Stato sconosciuto: {status}") from exc
    settings = billrun.BillRunSettings.from_config(current_app.config)
    try:
        run = billrun.start_bill_run(
            db.session, db.session.get(Creditor, service.creditor_id), flt, title=title or f"{service.name} (CLI)",
            mode=mode, include_issued=include_issued, send_email=send_email,
            settings=settings, enqueue=False)
    except billrun.BillRunError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Bollettazione n. {run.id}: {run.total} avvisi ({run.without_address} senza indirizzo).")
    with click.progressbar(length=run.total, label="Avvisi") as bar:
        done = [0]

        def progress(current):
            bar.update(current.rendered + current.skipped - done[0])
            done[0] = current.rendered + current.skipped

        run = billrun.run_inline(db.session, run, settings, progress=progress)
    shutil.copyfile(settings.storage_dir / run.file_name, out_path)
    click.echo(f"Pacchetto scritto in {out_path}: {run.rendered} avvisi, {run.pages} pagine"
               f"{f', {run.skipped} saltati perché già pagati' if run.skipped else ''}.")
    if send_email:
        with mailer() as m:
            for number in range(run.chunks):
                click.echo(f"Blocco {number}: {deliver_bill_run_chunk(db.session, run.id, number, m)}")


imports_cli = AppGroup("imports", help="Importazione di posizioni da file CSV/XLSX.")


@imports_cli.command("run")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--service", "service_code", required=True, help="Codice del servizio (es. TARI).")
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se il servizio è di più enti).")
@click.option("--dry-run", is_flag=True, help="Solo la verifica: nulla viene importato.")
@click.option("--valid-rows-only", is_flag=True, help="Importa le posizioni valide anche se altre righe hanno errori.")
@click.option("--update-existing", is_flag=True, help="Aggiorna le posizioni già importate non ancora pagate.")
def imports_run(path, service_code, creditor_fiscal_code, dry_run, valid_rows_only, update_existing):
    """Check (and import) a file as the Importazioni page does; prints the row report's summary.

    Exits with status 1 when rows are refused, 2 when the file itself is refused.
    """
    from pathlib import Path

    from flask import current_app

    from portal.imports import services as imports
    from portal.ledger.models import Creditor, Service

    service = _one_row(Service, sa_select_service(service_code), creditor_fiscal_code,
                       missing=f"Servizio {service_code} sconosciuto.",
                       ambiguous=f"Il servizio {service_code} esiste in più enti")
    creditor = db.session.get(Creditor, service.creditor_id)
    settings = imports.ImportSettings.from_config(current_app.config)
    options = imports.ImportOptions(valid_rows_only=valid_rows_only, update_existing=update_existing)
    try:
        with open(path, "rb") as stream:
            imp = imports.create_import(db.session, creditor, service, Path(path).name, stream, options, actor="cli",
                                        settings=settings, enqueue=False)
    except imports.ImportRefused as exc:
        click.echo(f"File rifiutato: {exc}", err=True)
        raise SystemExit(2) from exc
    db.session.commit()
    imports.run_dry_run(db.session, imp.id, settings=settings)
    db.session.commit()
    _echo_import(imp)
    for error in imports.report_rows(db.session, imp.id, limit=20):
        where = f"riga {error.row_number}" + (f", colonna «{error.column}»" if error.column else "")
        click.echo(f"  {where}: {error.message}")
    if imp.error_count > 20:
        click.echo(f"  … e altri {imp.error_count - 20} errori (rapporto completo nel back office).")
    if not dry_run:
        reason = imports.refusal(imp)
        if reason:
            click.echo(f"Nulla è stato importato: {reason}")
        else:
            imports.confirm(db.session, imp.id, actor="cli", enqueue=False)
            imports.run_import(db.session, imp.id, settings=settings)
            db.session.commit()
            if imp.status == "done":
                click.echo(f"Importate {imp.imported} posizioni (importazione n. {imp.id}); la pubblicazione su "
                           "pagoPA segue con la sincronizzazione.")
            else:
                click.echo(f"Importazione non riuscita: {imp.message}")
                raise SystemExit(1)
    if imp.error_count:
        raise SystemExit(1)


def sa_select_service(code: str):
    """The services with this code (any case)."""
    import sqlalchemy as sa

    from portal.ledger.models import Service

    return sa.select(Service).where(sa.func.upper(Service.code) == code.upper())


def _echo_import(imp) -> None:
    from portal.money import format_euro

    click.echo(f"Importazione n. {imp.id} ({imp.filename}): {imp.rows_total} righe, {imp.error_count} errori, "
               f"{imp.rows_refused} righe scartate.")
    click.echo(f"Posizioni: {imp.positions_new} nuove, {imp.positions_updated} da aggiornare, "
               f"{imp.positions_unchanged} invariate, {imp.positions_refused} scartate.")
    for code, total in sorted((imp.totals or {}).items()):
        click.echo(f"  {code}: {total['positions']} posizioni, {total['options']} pagamenti, "
                   f"{format_euro(total['amount_cents'])}")
    if imp.message:
        click.echo(imp.message)


@click.command("doctor")
@click.option("--soap-url", help="Indirizzo dell'endpoint SOAP da provare (predefinito: PAYBOX_PUBLIC_URL + "
                                 "/pagopa/paForNode).")
@with_appcontext
def doctor(soap_url: str | None):
    """Check the configuration, the database, Redis, the intermediary (GPD) and the SOAP endpoint; exit 1 on a
    failure."""
    import sqlalchemy as sa
    from flask import current_app

    from portal.config import ROOT
    from portal.jobs.queue import get_backend
    from portal.ledger.models import Creditor
    from portal.ops.doctor import diagnose, failed

    app = current_app._get_current_object()
    backend = get_backend(app)
    try:
        codes = list(db.session.scalars(sa.select(Creditor.fiscal_code).order_by(Creditor.id)))
    except sa.exc.SQLAlchemyError:
        codes = []  # the database check below says why
    finally:
        db.session.rollback()
    findings = diagnose(app.config, db.engine, migrations_dir=ROOT / "migrations",
                        redis=backend.redis if backend.mode == "rq" else None, fiscal_codes=codes,
                        soap_endpoint=soap_url)
    for finding in findings:
        click.echo(finding.line())
    bad = [f for f in findings if f.level == "fail"]
    warned = sum(1 for f in findings if f.level == "warn")
    click.echo(f"{len(findings)} controlli: {len(bad)} falliti, {warned} avvisi.")
    if failed(findings):
        raise SystemExit(1)


collections_cli = AppGroup("collections", help="Solleciti, contenzioso, interessi e sanzioni.")


@collections_cli.command("interest")
@click.argument("capital")
@click.argument("due", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.argument("paid", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--spread", default="0", show_default=True, help="Punti sul tasso legale (da -3 a +3, c.165).")
@click.option("--divisor", type=click.Choice(["365", "leap"]), default="365", show_default=True,
              help="365 sempre, o 366 negli anni bisestili.")
def collections_interest(capital: str, due, paid, spread: str, divisor: str):
    """Interessi legali su CAPITAL (euro) scaduto il DUE (AAAA-MM-GG) e pagato il PAID, dalla tabella dei tassi."""
    from decimal import Decimal, InvalidOperation

    from portal.collections import charges
    from portal.collections.settings import rate_table
    from portal.money import AmountError, format_euro, parse_euro

    try:
        cents = parse_euro(capital)
        result = charges.interest(cents, due.date(), paid.date(), rate_table(db.session),
                                  spread=Decimal(spread.replace(",", ".")), divisor=divisor)
    except (AmountError, InvalidOperation, charges.ChargeError) as exc:
        raise click.ClickException(str(exc) or "Valore non valido.") from exc
    for seg in result.segments:
        click.echo(f"{seg.start:%Y-%m-%d} → {seg.end:%Y-%m-%d}  {seg.days:>5} gg  {seg.percent:>6}%  "
                   f"÷{seg.divisor}  {seg.cents / 100:.6f}")
    click.echo(f"Totale: {result.days} giorni, interessi {format_euro(result.cents)}")


def register(app) -> None:
    """Add the command groups to the app's CLI."""
    from portal.api.cli import api_cli

    for group in (demo_cli, positions_cli, creditors_cli, users_cli, rq_cli, sync_cli, fdr_cli, webhooks_cli,
                  payments_cli,
                  notices_cli, api_cli, imports_cli, collections_cli):
        app.cli.add_command(group)
    app.cli.add_command(doctor)
