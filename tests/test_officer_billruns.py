"""The bill-run pages: roles and scope, preview and start, HTMX progress, the package download, cancel/restart."""

import io
import zipfile

import pytest

from portal.extensions import db
from portal.jobs.queue import get_backend
from portal.notices.models import BillRun

pytestmark = pytest.mark.usefixtures("settings")


def form(service, **extra):
    data = {"title": "TARI 2027 - prima emissione", "service_id": str(service.id), "status": "", "due_from": "",
            "due_to": "", "mode": "merged"}
    data.update(extra)
    return data


def test_viewer_sees_the_list_but_cannot_start_or_cancel(client, login, make_user, billable, service):
    login(make_user("consulta", role="viewer"))
    assert client.get("/officer/billruns").status_code == 200
    assert client.get("/officer/billruns/new").status_code == 403
    assert client.post("/officer/billruns/new", data=form(service, start="1")).status_code == 403
    assert client.post("/officer/billruns/1/cancel").status_code == 403


def test_preview_counts_then_start_runs_and_the_package_downloads(app, client, login, make_user, billable,
                                                                   service):
    login(make_user())
    page = client.get(f"/officer/billruns/new?service_id={service.id}")
    assert page.status_code == 200
    assert f'<option selected value="{service.id}">' in page.get_data(as_text=True)

    preview = client.post("/officer/billruns/new", data=form(service, preview="1"))
    assert preview.status_code == 200
    assert "si stampano 6 avvisi, di cui 1 senza indirizzo" in preview.get_data(as_text=True)
    assert db.session.query(BillRun).count() == 0

    started = client.post("/officer/billruns/new", data=form(service, start="1"))
    assert started.status_code == 303
    run = db.session.query(BillRun).one()
    assert started.headers["Location"].endswith(f"/officer/billruns/{run.id}")
    assert run.created_by_id is not None
    assert run.selection["service_id"] == service.id

    # While it works, the HTMX block polls itself...
    block = client.get(f"/officer/billruns/{run.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert block.lstrip().startswith('<section id="billrun-progress"')
    assert 'hx-trigger="every 2s"' in block
    get_backend(app).run_pending()
    # ...and stops once the run is done, offering the package.
    block = client.get(f"/officer/billruns/{run.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in block
    assert "Completata" in block
    assert "Avvisi stampati: 6 di 6" in block

    download = client.get(f"/officer/billruns/{run.id}/package.zip")
    assert download.status_code == 200
    assert download.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.data)) as package:
        assert "indice.csv" in package.namelist()
    download.close()
    listing = client.get("/officer/billruns").get_data(as_text=True)
    assert "TARI 2027 - prima emissione" in listing
    assert "Scarica ZIP" in listing


def test_invalid_form_and_empty_selection_are_refused_with_messages(client, login, make_user, billable, service):
    login(make_user())
    response = client.post("/officer/billruns/new", data=form(service, title="", due_from="2027-05-01",
                                                               due_to="2027-01-01", start="1"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Indicare una descrizione." in text
    assert "La data finale precede quella iniziale." in text
    response = client.post("/officer/billruns/new", data=form(service, status="expired", start="1"))
    assert response.status_code == 422
    assert "Nessuna posizione da avvisare" in response.get_data(as_text=True)
    assert db.session.query(BillRun).count() == 0


def test_scoped_operator_cannot_use_or_see_other_services(client, login, make_user, make_service, billable,
                                                          service):
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    login(make_user("mensa", services=[mensa]))
    assert client.post("/officer/billruns/new", data=form(service, start="1")).status_code == 422
    admin_run = BillRun(creditor_id=service.creditor_id, service_id=service.id, title="x", mode="merged",
                        chunk_size=10, status="done")
    db.session.add(admin_run)
    db.session.commit()
    assert client.get(f"/officer/billruns/{admin_run.id}").status_code == 404
    assert client.get(f"/officer/billruns/{admin_run.id}/package.zip").status_code == 404
    assert "TARI" not in client.get("/officer/billruns").get_data(as_text=True).split("<table")[-1]


def test_cancel_and_restart_from_the_page(app, client, login, make_user, billable, service):
    login(make_user())
    client.post("/officer/billruns/new", data=form(service, start="1"))
    run = db.session.query(BillRun).one()
    get_backend(app).run_pending(limit=2)
    assert client.post(f"/officer/billruns/{run.id}/cancel", csrf=False).status_code == 400
    response = client.post(f"/officer/billruns/{run.id}/cancel")
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(BillRun, run.id).status == "cancelled"
    get_backend(app).run_pending()
    assert client.post(f"/officer/billruns/{run.id}/restart").status_code == 303
    get_backend(app).run_pending()
    db.session.expire_all()
    assert db.session.get(BillRun, run.id).status == "done"
    page = client.get(f"/officer/billruns/{run.id}").get_data(as_text=True)
    assert "Annulla la bollettazione" not in page
    # The positions' timelines name the run.
    position_page = client.get(f"/officer/positions/{billable[0].id}").get_data(as_text=True)
    assert "avviso di pagamento è stato emesso." in position_page
    assert f"Bollettazione n.: {run.id}" in position_page
