"""Money back to the Comune, end to end on the sandbox: three notices paid, the PSP publishes a flow, the job
reconciles it, and the positions become ``reported`` with the flow on their timeline; the page shows it.
"""

import pytest
import requests
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import ManualBackend
from portal.ledger import services as ledger
from portal.ledger.flows import ReportingFlow
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus
from tests.conftest import position_input
from tests.servers import serving
from tests.test_end_to_end import pay_on_checkout

API_KEY = "fdr-key"


@pytest.fixture(scope="module")
def sandbox_url(live_server, tmp_path_factory):
    from portal.pagopa.sandbox import create_app as create_sandbox

    sandbox = create_sandbox({
        "TESTING": True, "SECRET_KEY": "sandbox-fdr", "SANDBOX_API_KEY": API_KEY,
        "SANDBOX_DATABASE": str(tmp_path_factory.mktemp("fdr") / "sandbox.sqlite3"),
        "SANDBOX_PAYBOX_SOAP_URL": f"{live_server}/pagopa/paForNode",
        "SANDBOX_DELIVERY_WORKER": False,
    })
    with serving(sandbox, public_url_key="SANDBOX_PUBLIC_URL") as base:
        yield base


@pytest.fixture
def jobs(app, sandbox_url, monkeypatch):
    requests.post(f"{sandbox_url}/sandbox/reset", timeout=5).raise_for_status()
    for key, value in {"PAGOPA_GPD_URL": f"{sandbox_url}/gpd/debt-positions-service",
                       "PAGOPA_CHECKOUT_URL": f"{sandbox_url}/checkout/ec",
                       "PAGOPA_FDR_URL": f"{sandbox_url}/fdr-org/service/v1", "PAGOPA_API_KEY": API_KEY}.items():
        monkeypatch.setitem(app.config, key, value)
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    return backend


def pay_three(app, jobs, sandbox_url, creditor, service, amounts=(4250, 1000, 2599)) -> list[int]:
    ids = []
    for amount in amounts:
        position, _ = ledger.create_position(db.session, creditor, position_input(service, amount=amount), actor="test")
        db.session.commit()
        ids.append(position.id)
    jobs.run_pending()
    db.session.expire_all()
    for position_id in ids:
        position = db.session.get(Position, position_id)
        assert position.status == PositionStatus.PUBLISHED
        pay_on_checkout(app, sandbox_url, position.options[0], creditor.name)
    requests.post(f"{sandbox_url}/sandbox/rt/deliver", timeout=10).raise_for_status()
    db.session.expire_all()
    assert {db.session.get(Position, i).status for i in ids} == {PositionStatus.PAID}
    return ids


def run_sync(app):
    from portal.jobs.tasks import reconcile_flows

    result = reconcile_flows(db.session)
    db.session.commit()
    return result


def test_three_paid_notices_come_back_in_a_flow_and_become_reported(app, ctx, jobs, sandbox_url, creditor, service,
                                                                    client, login, make_user, tmp_path):
    from portal.webhooks import services as webhooks
    from portal.webhooks.delivery import DeliverySettings, deliver_due, verify
    from tests.webhook_support import receiving

    with receiving() as (receiver, hook_url):
        webhooks.add_subscriber(db.session, creditor, url=hook_url, secret="whsec_e2e_secret_000000",
                                allow_private=True)
        db.session.commit()
        ids, flow = _pay_and_reconcile(app, jobs, sandbox_url, creditor, service)
        deliver_due(db.session, DeliverySettings(allow_private=True, timeout=5), max_seconds=20)
    for position_id in ids:
        position = db.session.get(Position, position_id)
        calls = [c for c in receiver.calls if f'"iupd":"{position.iupd}"' in c["body"]]
        assert [c["headers"]["Paybox-Event"] for c in calls] == ["position.paid", "position.reported"]
        assert all(verify("whsec_e2e_secret_000000", c["headers"]["Paybox-Signature"], c["body"]) for c in calls)
        assert f'"flow_id":"{flow.fdr}"' in calls[1]["body"]

    login(make_user("consulta", role="viewer"))
    page = client.get("/officer/reporting").get_data(as_text=True)
    assert f'data-flow="{flow.fdr}"' in page
    assert "78,49" in page
    detail = client.get(f"/officer/reporting/flows/{flow.id}").get_data(as_text=True)
    assert detail.count('data-outcome="matched"') == 3
    assert "Scarica ora" not in page  # admins only

    # The accounting export by regulation date: its totals equal the flow's.
    day = flow.regulation_date.isoformat()
    export = client.get(f"/officer/reporting/export?from={day}&to={day}&by=regulation&layout=machine")
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    payments_rows = [r for r in rows if r["row_type"] == "payment"]
    assert len(payments_rows) == 3
    assert {r["flow_id"] for r in payments_rows} == {flow.fdr}
    [service_total] = [r for r in rows if r["row_type"] == "service_total"]
    assert int(service_total["amount_cents"]) == flow.sum_cents
    cli = app.test_cli_runner().invoke(args=["payments", "export", str(tmp_path / "p.xlsx"), "--from", day,
                                             "--to", day, "--by", "regulation"])
    assert cli.exit_code == 0, cli.output
    assert "6 righe" in cli.output  # 3 payments, 1 service total, 1 beneficiary total, 1 channel total


def _pay_and_reconcile(app, jobs, sandbox_url, creditor, service):
    ids = pay_three(app, jobs, sandbox_url, creditor, service)
    published = requests.post(f"{sandbox_url}/sandbox/fdr/publish", json={}, timeout=5).json()["flows"]
    assert len(published) == 1
    result = run_sync(app)
    assert (result.recorded, result.matched, len(result.reported_positions)) == (1, 3, 3)
    flow = db.session.scalar(sa.select(ReportingFlow))
    assert flow.fdr == published[0]["fdr"]
    assert (flow.sum_cents, flow.matched_cents, flow.total_payments) == (7849, 7849, 3)
    assert flow.regulation.startswith("SANDBOX-")
    for position_id in ids:
        position = db.session.get(Position, position_id)
        assert position.status == PositionStatus.REPORTED
        event = db.session.scalar(sa.select(Event).where(Event.position_id == position_id, Event.kind == "reported"))
        assert event.details["flow_id"] == flow.fdr
    # Running again finds nothing new.
    assert run_sync(app).recorded == 0
    return ids, flow


def test_a_revision_with_fewer_payments_over_http_withdraws_one_report(app, ctx, jobs, sandbox_url, creditor,
                                                                        service):
    from portal.ledger import reporting
    from portal.ledger.flows import ReportingAnomaly

    ids, flow = _pay_and_reconcile(app, jobs, sandbox_url, creditor, service)
    withdrawn = db.session.get(Position, ids[1])
    revised = requests.post(f"{sandbox_url}/sandbox/fdr/revise", timeout=5, json={
        "fdr": flow.fdr, "pspId": flow.psp_id, "withdraw": [withdrawn.options[0].iuv]}).json()
    assert (revised["revision"], revised["totPayments"]) == (2, 2)
    result = run_sync(app)
    assert result.recorded == 1
    db.session.expire_all()
    current = db.session.scalar(sa.select(ReportingFlow).where(ReportingFlow.revision == 2))
    assert (current.sum_cents, current.matched_cents, current.total_payments) == (4250 + 2599, 4250 + 2599, 2)
    assert db.session.get(Position, ids[1]).options[0].reported_at is None
    assert {db.session.get(Position, i).options[0].reported_at is not None for i in (ids[0], ids[2])} == {True}
    [anomaly] = db.session.scalars(sa.select(ReportingAnomaly).where(
        ReportingAnomaly.kind == reporting.REPORT_WITHDRAWN)).all()
    assert anomaly.position_id == withdrawn.id
    assert run_sync(app).recorded == 0  # the same revision is not fetched twice


def psp_server(pay: str):
    """A minimal FdR API over HTTP publishing one flow whose single line pays ``pay`` euros (raw JSON text)."""
    from flask import Flask, Response

    fdr_app = Flask("psp")
    base = "/fdr-org/service/v1/organizations/<org>/fdrs"
    flow = "2027-01-12BCITITMM-0001"

    def raw(text):
        return Response(text, content_type="application/json")

    @fdr_app.get(base)
    def flows(org):
        return raw('{"metadata": {"pageSize": 1000, "pageNumber": 1, "totPage": 1}, "count": 1, "data": [{"fdr": "'
                   + flow + '", "pspId": "BCITITMM", "revision": 1, "published": "2027-01-12T08:00:00Z"}]}')

    @fdr_app.get(base + "/<fdr>/revisions/<int:rev>/psps/<psp>")
    def header(org, fdr, rev, psp):
        return raw('{"fdr": "' + flow + '", "revision": 1, "status": "PUBLISHED", "regulation": "SCT-1", '
                   '"regulationDate": "2027-01-12", "sender": {"pspId": "BCITITMM"}, "totPayments": 1, '
                   '"sumPayments": ' + pay + '}')

    @fdr_app.get(base + "/<fdr>/revisions/<int:rev>/psps/<psp>/payments")
    def lines(org, fdr, rev, psp):
        return raw('{"metadata": {"pageSize": 1000, "pageNumber": 1, "totPage": 1}, "count": 1, "data": [{"index": 1, '
                   '"iuv": "01000000000000014", "iur": "R1", "idTransfer": 1, "pay": ' + pay + ', '
                   '"payStatus": "EXECUTED", "payDate": "2027-01-10T10:00:00Z"}]}')

    return serving(fdr_app)


def test_a_flow_with_an_amount_of_three_decimals_is_kept_as_unreadable(ctx, creditor):
    from portal.pagopa.fdr import FdrClient
    from portal.pagopa.fdr_sync import sync_flows

    with psp_server("10.001") as base:
        client = FdrClient(f"{base}/fdr-org/service/v1", "k", timeout=5)
        result = sync_flows(db.session, creditor, client)
        assert result.rejected == 1
        flow = db.session.scalar(sa.select(ReportingFlow))
        assert flow.status == "rejected"
        assert "Importo non valido" in flow.error
        assert "10.001" in flow.error
        assert sync_flows(db.session, creditor, client).rejected == 0  # kept once, not fetched again
    from portal.ledger import reporting_anomalies

    counts = reporting_anomalies.count_open(db.session, creditor.id)
    assert counts == {"flow_rejected": 1}


def test_an_admin_asks_for_the_download_now(app, ctx, jobs, client, login, make_user):
    login(make_user("admin", role="admin"))
    assert client.post("/officer/reporting/sync", csrf=False).status_code == 400
    response = client.post("/officer/reporting/sync")
    assert response.status_code == 302
    assert [job.task for job in jobs.pending] == ["sync_reporting_flows"]


def test_the_demo_button_has_the_sandbox_publish_and_fetches_the_flows(app, ctx, jobs, sandbox_url, creditor, service,
                                                                       client, login, make_user, monkeypatch):
    [position_id] = pay_three(app, jobs, sandbox_url, creditor, service, amounts=(1500,))
    monkeypatch.setitem(app.config, "PAGOPA_SANDBOX_URL", sandbox_url)
    login(make_user("admin", role="admin"))
    assert "Sandbox: fai pubblicare" in client.get("/officer/reporting").get_data(as_text=True)
    assert client.post("/officer/reporting/sandbox-publish").status_code == 302
    jobs.run_pending()
    db.session.expire_all()
    assert db.session.get(Position, position_id).status == PositionStatus.REPORTED
