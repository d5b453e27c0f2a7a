"""Bill runs: selection in envelope order, chunks, the vendor package, restart and cancel, "notice issued".

Runs the real steps (prepare, one job per chunk, finish) through the manual job backend on PostgreSQL, then opens
the ZIP as a vendor would: the PDFs (barcodes decoded), the index sorted by CAP, the data file.
"""

import csv
import io
import zipfile
from datetime import date

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import get_backend
from portal.ledger import queries
from portal.ledger import services as ledger
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput
from portal.ledger.models import Event, Position
from portal.notices import billrun
from portal.notices.envelopes import has_postal_address, has_postal_address_sql, postal_address, poste_text
from portal.notices.models import BillRun, BillRunChunk, BillRunItem
from tests.conftest import CF_COMUNE
from tests.notice_fixtures import PEOPLE
from tests.prerequisites import require


@pytest.fixture(autouse=True)
def _poppler_installed():
    require("pdfinfo", "pdftoppm")


def start(creditor, settings, *, mode="merged", flt=None, **kwargs):
    run = billrun.start_bill_run(db.session, creditor, flt or queries.PositionFilter(), title="TARI 2027",
                                 mode=mode, settings=settings, **kwargs)
    db.session.commit()
    return run


def run_jobs(app):
    return get_backend(app).run_pending()


def read_csv(package: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(package.read(name).decode("utf-8")), delimiter=";"))


def open_package(settings, run) -> zipfile.ZipFile:
    return zipfile.ZipFile(settings.storage_dir / run.file_name)


# --- Addresses ---------------------------------------------------------------------------------------------------


def test_poste_text_capitals_without_punctuation_or_accents():
    assert poste_text("Via dell'Indipendenza, 88") == "VIA DELL INDIPENDENZA 88"
    assert poste_text("Città di Sant’Àngelo") == "CITTA DI SANT ANGELO"
    assert poste_text("Corso d'Italia 15/B") == "CORSO D ITALIA 15/B"
    assert len(poste_text("x" * 100)) == 44


def test_postal_address_rule_is_the_same_in_python_and_sql(billable, creditor):
    from portal.ledger.models import Debtor

    in_sql = dict(db.session.execute(sa.select(Debtor.fiscal_code, has_postal_address_sql(Debtor))).all())
    for debtor in db.session.scalars(sa.select(Debtor)):
        assert bool(in_sql[debtor.fiscal_code]) == has_postal_address(debtor), debtor.fiscal_code
    assert sum(map(bool, in_sql.values())) == 5
    # Street and city without a CAP: not mailable, in SQL too (a NULL must not make the row fall out of both sets).
    no_cap = db.session.scalars(sa.select(Debtor).where(Debtor.fiscal_code == PEOPLE[0][0])).one()
    no_cap.postal_code = None
    db.session.flush()
    assert has_postal_address(no_cap) is False
    assert db.session.scalar(sa.select(sa.not_(has_postal_address_sql(Debtor))).where(Debtor.id == no_cap.id)) is True
    address = postal_address(billable[1].debtor)
    assert address.lines == ["LAURA BIANCHI", "CORSO D ITALIA 15/B", "20121 MILANO MI"]


# --- A whole run -------------------------------------------------------------------------------------------------


def test_merged_run_produces_the_vendor_package(app, billable, creditor, settings):
    run = start(creditor, settings)
    assert (run.status, run.total, run.without_address) == ("preparing", 6, 1)
    ran = run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    # prepare + 3 postal chunks of 2 + 1 chunk without address + finish
    assert ran == 6
    assert (run.status, run.rendered, run.skipped, run.chunks) == ("done", 6, 0, 4)
    assert run.percent == 100

    with open_package(settings, run) as package:
        names = package.namelist()
        assert {"indice.csv", "dati.csv", "senza_indirizzo.csv", "LEGGIMI.txt"} <= set(names)
        pdfs = sorted(n for n in names if n.startswith("avvisi/"))
        assert pdfs == ["avvisi/avvisi-00001.pdf", "avvisi/avvisi-00002.pdf", "avvisi/avvisi-00003.pdf"]
        index = read_csv(package, "indice.csv")
        # Sorted by CAP: Roma 00184, Torino 10121, Milano 20121, Bologna 40121, Firenze 50123.
        assert [row["cap"] for row in index] == ["00184", "10121", "20121", "40121", "50123"]
        assert [int(row["envelope_id"]) for row in index] == [1, 2, 3, 4, 5]
        milano = index[2]
        assert milano["recipient_name"] == "LAURA BIANCHI"
        assert milano["address_line"] == "CORSO D ITALIA 15/B"
        assert (milano["locality"], milano["province"], milano["country"]) == ("MILANO", "MI", "")
        assert milano["product"] == "POSTA_MASSIVA"
        assert len(milano["notice_numbers"].split()) == 4  # single payment + 3 installments
        # Page ranges inside each merged file follow each other, and match the PDFs' page counts.
        for file in {row["file"] for row in index}:
            rows = [r for r in index if r["file"] == file]
            pages = _pdf_pages(package.read(f"avvisi/{file}"))
            assert int(rows[0]["page_from"]) == 1
            assert int(rows[-1]["page_to"]) == pages
            for a, b in zip(rows, rows[1:], strict=False):
                assert int(b["page_from"]) == int(a["page_to"]) + 1
        assert all(int(r["sheets"]) == int(r["pages"]) for r in index)  # simplex by default

        apart = read_csv(package, "senza_indirizzo.csv")
        assert [r["debtor_fiscal_code"] for r in apart] == ["BLUSRA95H60F839V"]
        assert apart[0]["email"] == "sara@example.org"
        assert package.namelist().count(f"senza_indirizzo/{apart[0]['file']}") == 1

        data = read_csv(package, "dati.csv")
        assert len(data) == 6 + 3  # one row per option printed
        by_nav = {row["notice_number"]: row for row in data}
        for position in billable:
            for option in position.options:
                row = by_nav[option.notice_number]
                assert row["qr_payload"] == f"PAGOPA|002|{option.notice_number}|{CF_COMUNE}|{option.amount_cents}"
                assert int(row["amount_cents"]) == option.amount_cents
                assert row["iuv"] == option.iuv

    # Every position now records the notice: the column and one timeline event naming the run.
    for position in billable:
        db.session.refresh(position)
        assert position.notice_issued_at is not None
        events = [e for e in position.events if e.kind == billrun.NOTICE_ISSUED]
        assert len(events) == 1
        assert events[0].details["bill_run_id"] == run.id
    # The chunk parts are gone once the package exists.
    assert sorted(p.name for p in (settings.storage_dir / f"billrun-{run.id}").iterdir()) == [
        f"bollettazione-{run.id}.zip"]


def test_envelope_mode_one_pdf_per_envelope_with_barcodes(app, billable, creditor, settings, tmp_path):
    from tests.test_notices import decode_pages

    run = start(creditor, settings, mode="envelopes")
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    with open_package(settings, run) as package:
        index = read_csv(package, "indice.csv")
        files = [r["file"] for r in index]
        assert len(files) == 5
        for row in index:
            assert row["file"] == f"{row['debtor_fiscal_code']}_{row['file'].split('_')[1]}"
            assert package.getinfo(f"avvisi/{row['file']}").compress_type == zipfile.ZIP_STORED
        milano = next(r for r in index if r["cap"] == "20121")
        position = db.session.get(Position, int(milano["position_id"]))
        found = decode_pages(package.read(f"avvisi/{milano['file']}"), tmp_path)
    qr = sorted(text for kind, text in found if kind == "QRCode")
    assert qr == sorted(f"PAGOPA|002|{o.notice_number}|{CF_COMUNE}|{o.amount_cents}" for o in position.options)
    assert milano["file"] == f"{position.debtor.fiscal_code}_{position.single_option.iuv}.pdf"


def test_selection_follows_the_filter_and_skips_issued_positions(app, billable, creditor, service, settings,
                                                                 make_service):
    other = make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0201102IM/")
    # A draft (not on pagoPA) and a position of another service are never selected here.
    draft, _ = ledger.create_position(db.session, creditor, PositionInput(
        service_id=other.id, debtor=DebtorInput(fiscal_code=PEOPLE[0][0], name="Mario Rossi"), subject="Mensa",
        single=OptionInput(amount_cents=500, due_date=date.today())), actor="test", enqueue_sync=False)
    db.session.commit()
    first = start(creditor, settings, flt=queries.PositionFilter(service_id=service.id))
    run_jobs(app)
    assert first.total == 6
    # Everything has its notice now: a second run of the same selection has nothing to print...
    with pytest.raises(billrun.BillRunError, match="Nessuna posizione"):
        start(creditor, settings, flt=queries.PositionFilter(service_id=service.id))
    # ...unless the officer asks to print issued notices again.
    again = start(creditor, settings, flt=queries.PositionFilter(service_id=service.id), include_issued=True)
    assert again.total == 6
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BillRunItem).where(
        BillRunItem.position_id == draft.id)) == 0


def test_paid_before_rendering_is_skipped_and_not_issued(app, billable, creditor, settings):
    run = start(creditor, settings)
    backend = get_backend(app)
    backend.run_pending(limit=1)  # prepare only
    paid = billable[0]
    db.session.refresh(paid)
    for option in paid.options:
        option.status = "paid"
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    assert (run.status, run.rendered, run.skipped) == ("done", 5, 1)
    assert db.session.get(Position, paid.id).notice_issued_at is None
    with open_package(settings, run) as package:
        assert str(paid.id) not in {r["position_id"] for r in read_csv(package, "indice.csv")}


def test_restart_after_a_crash_renders_only_the_missing_chunks(app, billable, creditor, settings, monkeypatch):
    run = start(creditor, settings)
    backend = get_backend(app)
    backend.run_pending(limit=2)  # prepare + chunk 0
    # The worker dies: the other chunk jobs are lost.
    backend.clear()
    db.session.expire_all()
    assert db.session.get(BillRunChunk, (run.id, 0)).status == "done"
    rendered_before = db.session.get(BillRunChunk, (run.id, 0)).rendered_at

    calls = []
    original = billrun._render_files
    monkeypatch.setattr(billrun, "_render_files", lambda rows, files, number, **kw: calls.append(number) or
                        original(rows, files, number, **kw))
    billrun.restart(db.session, run.id)
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    assert calls == [1, 2, 3]
    assert db.session.get(BillRunChunk, (run.id, 0)).rendered_at == rendered_before
    assert (run.status, run.rendered) == ("done", 6)
    # One "notice issued" event per position, whatever the number of attempts.
    counts = db.session.execute(sa.select(Event.position_id, sa.func.count()).where(
        Event.kind == billrun.NOTICE_ISSUED).group_by(Event.position_id)).all()
    assert sorted(c for _, c in counts) == [1] * 6


def test_a_chunk_job_run_twice_renders_once(app, billable, creditor, settings):
    run = start(creditor, settings)
    backend = get_backend(app)
    backend.run_pending(limit=1)
    db.session.expire_all()
    assert billrun.render_chunk(db.session, run.id, 0, settings, enqueue=False).startswith("blocco 0")
    db.session.commit()
    assert "già elaborato" in billrun.render_chunk(db.session, run.id, 0, settings, enqueue=False)
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    assert db.session.get(BillRun, run.id).rendered == 6


def test_cancel_stops_the_run_and_issues_nothing(app, billable, creditor, settings):
    run = start(creditor, settings)
    backend = get_backend(app)
    backend.run_pending(limit=2)
    billrun.cancel(db.session, run.id, actor_user_id=None)
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    assert run.status == "cancelled"
    assert run.file_name is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)
                             .where(Position.notice_issued_at.is_not(None))) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BillRunChunk).where(
        BillRunChunk.bill_run_id == run.id, BillRunChunk.status == "done")) == 1
    # Restarting a cancelled run completes it, reusing the chunk already rendered.
    billrun.restart(db.session, run.id)
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    assert db.session.get(BillRun, run.id).status == "done"
    with pytest.raises(billrun.BillRunError):
        billrun.cancel(db.session, run.id)


def test_start_refuses_bad_requests(billable, creditor, settings):
    with pytest.raises(billrun.BillRunError, match="Modalità"):
        billrun.start_bill_run(db.session, creditor, queries.PositionFilter(), title="x", mode="pdf",
                               settings=settings)
    with pytest.raises(billrun.BillRunError, match="descrizione"):
        billrun.start_bill_run(db.session, creditor, queries.PositionFilter(), title=" ", mode="merged",
                               settings=settings)


def test_run_inline_does_every_step_here(app, billable, creditor, settings):
    run = billrun.start_bill_run(db.session, creditor, queries.PositionFilter(), title="CLI", mode="envelopes",
                                 settings=settings, enqueue=False)
    db.session.commit()
    seen = []
    run = billrun.run_inline(db.session, run, settings, progress=lambda r: seen.append(r.rendered))
    assert run.status == "done"
    assert seen == [2, 4, 5, 6]
    assert get_backend(app).pending == []


def _pdf_pages(pdf: bytes) -> int:
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        out = subprocess.run(["pdfinfo", f.name], check=True, capture_output=True, text=True).stdout  # noqa: S603,S607
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def test_the_periodic_sweep_resumes_runs_whose_jobs_were_lost(app, billable, creditor, settings):
    from portal.jobs.queue import enqueue_now

    run = start(creditor, settings)
    backend = get_backend(app)
    backend.run_pending(limit=2)  # prepare + chunk 0, then the queue is lost (Redis flushed, worker gone)
    backend.clear()
    enqueue_now("billrun_sweep")
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    assert (run.status, run.rendered) == ("done", 6)
    # A done run is left alone.
    assert billrun.resume_active(db.session) == 0


def test_cli_billrun_writes_the_package(app, billable, creditor, service, settings, tmp_path):
    out = tmp_path / "tari.zip"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["notices", "billrun", "--service", "TARI", "--out", str(out), "--mode", "envelopes"])
    assert result.exit_code == 0, result.output
    assert "Pacchetto scritto" in result.output
    with zipfile.ZipFile(out) as package:
        assert len(read_csv(package, "indice.csv")) == 5
        assert len([n for n in package.namelist() if n.startswith("senza_indirizzo/")]) == 1
    # Nothing left to print: a clear error, no empty package.
    again = runner.invoke(args=["notices", "billrun", "--service", "TARI", "--out", str(tmp_path / "x.zip")])
    assert again.exit_code != 0
    assert "Nessuna posizione da avvisare" in again.output
    unknown = runner.invoke(args=["notices", "billrun", "--service", "NOPE", "--out", str(tmp_path / "y.zip")])
    assert "Nessun servizio con codice NOPE." in unknown.output


def test_every_selected_position_is_printed_or_listed_apart(app, billable, creditor, settings):
    """A debtor with street and city but no CAP goes to the no-address list, never out of the run."""
    billable[2].debtor.postal_code = None
    db.session.commit()
    run = start(creditor, settings)
    assert (run.total, run.without_address) == (6, 2)
    run_jobs(app)
    db.session.expire_all()
    run = db.session.get(BillRun, run.id)
    assert (run.status, run.total, run.rendered, run.without_address) == ("done", 6, 6, 2)
    with open_package(settings, run) as package:
        assert len(read_csv(package, "indice.csv")) == 4
        assert {r["debtor_fiscal_code"] for r in read_csv(package, "senza_indirizzo.csv")} == {
            PEOPLE[2][0], PEOPLE[5][0]}


def test_old_packages_are_removed_and_the_run_says_so(app, client, login, make_user, billable, creditor, settings):
    from datetime import timedelta

    from portal.jobs.queue import enqueue_now
    from portal.ledger.types import utcnow

    done = start(creditor, settings)
    run_jobs(app)
    stopped = start(creditor, settings, include_issued=True)
    get_backend(app).run_pending(limit=2)  # prepare + one chunk: files on disk
    billrun.cancel(db.session, stopped.id)
    db.session.commit()
    get_backend(app).clear()
    fresh = start(creditor, settings, include_issued=True)
    run_jobs(app)
    for run in (done, stopped):
        db.session.get(BillRun, run.id).finished_at = utcnow() - timedelta(days=settings.retention_days + 1)
    db.session.commit()

    enqueue_now("purge_bill_run_files")
    run_jobs(app)
    db.session.expire_all()
    assert not (settings.storage_dir / f"billrun-{done.id}").exists()
    assert not (settings.storage_dir / f"billrun-{stopped.id}").exists()
    assert (settings.storage_dir / f"billrun-{fresh.id}").exists()
    assert db.session.get(BillRun, done.id).file_name is None
    login(make_user())
    assert client.get(f"/officer/billruns/{done.id}/package.zip").status_code == 404
    page = client.get(f"/officer/billruns/{done.id}").get_data(as_text=True)
    assert "Pacchetto rimosso dal server dopo 90 giorni." in page
    assert "Scarica il pacchetto ZIP" not in page
    # The positions keep their "notice issued".
    assert all(db.session.get(Position, p.id).notice_issued_at is not None for p in billable)
