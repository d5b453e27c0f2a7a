"""Browser: an admin reads the collections chart on the dashboard (and its table), opens Rendicontazione, sees the
anomaly of a flow, resolves it with a note, and sends again a webhook delivery that failed — to a real local
receiver that answered 500 and now answers 200 — until the log shows it delivered."""

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from portal.extensions import db
from portal.ledger.flows import ReportingAnomaly
from portal.ledger.types import utcnow
from portal.webhooks import services as webhooks
from portal.webhooks.delivery import DeliverySettings, deliver_due
from portal.webhooks.models import WebhookDelivery
from tests.accessibility import check_page
from tests.browser_support import sign_in
from tests.test_cashflow import FLOW, UNKNOWN_IUV, paid_and_reported
from tests.webhook_support import receiving

pytestmark = pytest.mark.browser

EURO = "\u00a0€"


def test_admin_reads_the_collections_resolves_an_anomaly_and_replays_a_failed_delivery(
        app, page, make_user, creditor, service, make_service, make_position):
    with receiving(default=500) as (receiver, url):
        webhooks.add_subscriber(db.session, creditor, url=url + "/hook", events=["position.paid"], allow_private=True)
        db.session.commit()
        paid_and_reported(creditor, service, make_service, make_position)
        # The receiver answers 500 and the day of retries is over: the delivery fails.
        db.session.execute(sa.update(WebhookDelivery).values(retry_until=utcnow()))
        db.session.commit()
        deliver_due(db.session, DeliverySettings(allow_private=True, timeout=2), max_seconds=10)
        assert [c["status"] for c in receiver.calls] == [500]
        make_user("admin", role="admin")
        db.session.remove()

        # --- The dashboard: the chart, its table, one service ---------------------------------------------------
        sign_in(page, "admin")
        collections = page.get_by_test_id("cashflow")
        chart = page.get_by_role("img", name="Incassi per settimana: tutti i servizi")
        expect(chart).to_be_visible()
        legend = collections.get_by_test_id("cashflow-legend")
        expect(legend).to_contain_text(f"Dovuto: 54,50{EURO}")
        expect(legend).to_contain_text(f"Incassato (data di pagamento): 42,50{EURO}")
        expect(legend).to_contain_text(f"Riversato (data di regolamento): 42,50{EURO}")
        table = collections.get_by_test_id("cashflow-table")
        expect(table).to_be_hidden()
        collections.get_by_text("Mostra i dati del grafico in tabella").click()
        expect(table).to_be_visible()
        monday = date.today() - timedelta(days=date.today().weekday())
        week = table.locator(f'tr[data-week="{monday.isoformat()}"]')
        expect(week.locator("td")).to_have_text([f"54,50{EURO}", f"42,50{EURO}", f"42,50{EURO}"])
        last_flows = collections.get_by_test_id("last-flows")
        expect(last_flows.locator(f'tr[data-flow="{FLOW}"]').get_by_test_id("flow-difference")).to_have_text(
            f"9,99{EURO} (non riconciliata)")
        check_page(page, "dashboard-collections")
        collections.get_by_label("Servizio", exact=True).select_option(label="IMU - Imposta municipale")
        expect(page.get_by_role("img", name="Incassi per settimana: IMU - Imposta municipale")).to_be_visible()
        expect(page).to_have_url(re.compile(r"service_id=\d+"))
        page.get_by_test_id("cashflow").get_by_text("Mostra i dati del grafico in tabella").click()
        expect(page.get_by_test_id("cashflow-table").locator(f'tr[data-week="{monday.isoformat()}"] td')).to_have_text(
            [f"12,00{EURO}", f"0,00{EURO}", f"0,00{EURO}"])

        # --- Rendicontazione: the flow's difference, its anomaly resolved with a note -----------------------------
        page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Rendicontazione").click()
        flow_row = page.get_by_test_id("flows-table").locator(f'tr[data-flow="{FLOW}"]')
        expect(flow_row.get_by_test_id("difference")).to_contain_text(f"9,99{EURO}")
        anomaly = page.get_by_test_id("reporting-anomalies-table").locator("tbody tr").filter(has_text=UNKNOWN_IUV)
        expect(anomaly).to_contain_text("Pagamento rendicontato senza ricevuta")
        expect(anomaly).to_contain_text("nessuna ricevuta con questo IUV")
        anomaly.get_by_label("Come è stata risolta").fill("Versamento di un altro ente: segnalato al PSP")
        anomaly.get_by_role("button", name="Segna come risolta").click()
        expect(anomaly).to_contain_text("Risolta")
        expect(anomaly).to_contain_text("Versamento di un altro ente: segnalato al PSP")
        with app.app_context():
            [resolved] = db.session.scalars(sa.select(ReportingAnomaly)).all()
            assert resolved.resolved_at is not None
            assert resolved.resolution_note == "Versamento di un altro ente: segnalato al PSP"
        page.reload()
        expect(page.get_by_test_id("no-reporting-anomalies")).to_be_visible()

        # --- Impostazioni → Webhook: the failed delivery sent again, delivered ----------------------------------
        page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Impostazioni").click()
        page.get_by_role("link", name="Gestisci i webhook").click()
        page.get_by_role("link", name="Registro degli invii").click()
        delivery = page.get_by_test_id("webhook-deliveries").locator("tbody tr").filter(has_text="position.paid")
        expect(delivery).to_have_attribute("data-status", "failed")
        expect(delivery).to_contain_text("Fallito")
        expect(delivery).to_contain_text("HTTP 500")
        receiver.default = 200
        delivery.get_by_role("button", name="Invia di nuovo").click()
        expect(page.get_by_text("Invio ripetuto: l'esito compare qui tra pochi secondi.")).to_be_visible()
        with app.app_context():
            assert app.extensions["paybox_jobs"].run_pending() >= 1  # the delivery job the click asked for
            db.session.remove()
        page.reload()
        expect(delivery).to_have_attribute("data-status", "delivered")
        expect(delivery).to_contain_text("Consegnato")
        expect(delivery).to_contain_text("HTTP 200")
        assert [c["status"] for c in receiver.calls] == [500, 200]
        assert receiver.calls[0]["headers"]["Paybox-Event-Id"] == receiver.calls[1]["headers"]["Paybox-Event-Id"]
