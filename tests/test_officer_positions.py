"""The officer's positions list (filters, keyset pages, HTMX fragments, scope), position page and citizen page."""

import re
from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Service
from portal.ledger.notice_numbers import format_nav
from portal.ledger.status import PositionStatus
from portal.ledger.types import utcnow
from portal.settings import services as settings_svc
from tests.conftest import CF_PERSON, position_input

CF_VERDI = "VRDGPP70B02F205Z"
CF_BIANCHI = "BNCLCU85C03L219Y"
CF_NERI = "NREPLA90D44H501W"
HX = {"HX-Request": "true"}


def position_ids(html: str) -> list[int]:
    """Ids of the positions linked from a list page or fragment, in order."""
    return [int(n) for n in re.findall(r'href="/officer/positions/(\d+)"', html)]


def set_due(position, due: date):
    position.due_date = due
    for option in position.options:
        option.due_date = due
    db.session.commit()


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin", role="admin"))


@pytest.fixture
def other_service(make_service):
    return make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0201102IM/")


@pytest.fixture
def other_creditor_position(ctx):
    """A position of another Comune (its own service, debtor and numbers)."""
    comune = settings_svc.create_creditor(
        db.session, fiscal_code="01234567897", name="Comune Altro", segregation_code="02")
    settings_svc.add_account(db.session, comune, iban="IT60X0542811101000000123456", label="Tesoreria")
    svc = Service(creditor=comune, code="TARI", name="TARI altro", taxonomy_code="9/0101101IM/",
                  account=comune.accounts[0])
    db.session.add(svc)
    db.session.commit()  # numbers are allocated on their own connection: the counter row must be committed
    position, _ = ledger.create_position(db.session, comune, position_input(svc, name="Estraneo"), actor="test")
    db.session.commit()
    return position


# --- Access ------------------------------------------------------------------------------------------------------


def test_list_needs_login(client, creditor):
    response = client.get("/officer/positions")
    assert response.status_code == 302
    assert "/officer/login" in response.headers["Location"]


def test_viewer_sees_the_full_page(client, make_user, login, make_position):
    position = make_position(name="Mario Rossi")
    login(make_user("consulta", role="viewer"))
    response = client.get("/officer/positions")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in html
    assert "Mario Rossi" in html
    assert CF_PERSON in html
    assert format_nav(position.options[0].notice_number) in html
    assert position_ids(html) == [position.id]
    assert "1 posizione: mostrate 1." in html
    assert "HX-Request" in response.headers["Vary"]


def test_htmx_filter_request_returns_only_the_fragment(client, admin, make_position):
    make_position(name="Mario Rossi")
    response = client.get("/officer/positions?debtor=mario", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html
    assert "<body" not in html
    assert "Mario Rossi" in html
    # The form and the count come back out of band, the count keeping its live region.
    assert 'id="positions-filter"' in html
    assert 'hx-swap-oob="true"' in html
    assert 'id="positions-count"' in html
    assert 'hx-swap-oob="innerHTML"' in html
    assert "HX-Request" in response.headers["Vary"]


def test_dashboard_links_to_the_filtered_list(client, admin, make_position):
    make_position()
    html = client.get("/officer/").get_data(as_text=True)
    assert "/officer/positions?overdue=1" in html
    assert "/officer/positions?status=draft" in html


# --- Filters -----------------------------------------------------------------------------------------------------


@pytest.fixture
def three(make_position, other_service):
    """Three positions: Rossi (TARI, 100 €), Verdi (Mensa, 250 € with installments), Bianchi (TARI, 1.000 €)."""
    rossi = make_position(fiscal_code=CF_PERSON, name="Mario Rossi", amount=10000)
    verdi = make_position(fiscal_code=CF_VERDI, name="Giuseppe Verdi", amount=25000, installments=(12500, 12500),
                          service=other_service)
    bianchi = make_position(fiscal_code=CF_BIANCHI, name="Luca Bianchi", amount=100000)
    return rossi, verdi, bianchi


def listed(client, query: str) -> set[int]:
    response = client.get(f"/officer/positions?{query}", headers=HX)
    assert response.status_code == 200
    return set(position_ids(response.get_data(as_text=True)))


def test_filter_by_service_and_status(client, admin, three, other_service):
    rossi, verdi, bianchi = three
    assert listed(client, f"service_id={other_service.id}") == {verdi.id}
    ledger.transition(db.session, rossi, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    assert listed(client, "status=published") == {rossi.id}
    assert listed(client, "status=draft") == {verdi.id, bianchi.id}


def test_filter_by_debtor_code_and_start_of_any_name_word(client, admin, three):
    rossi, verdi, bianchi = three
    assert listed(client, f"debtor={CF_VERDI.lower()}") == {verdi.id}
    assert listed(client, "debtor=luca") == {bianchi.id}
    assert listed(client, "debtor=Mario+R") == {rossi.id}
    assert listed(client, "debtor=Rossi") == {rossi.id}  # the surname, wherever it stands
    assert listed(client, "debtor=ossi") == set()  # the start of a word, not any part of it


def test_filter_and_citizen_page_normalise_full_width_codes(client, admin, three):
    """A code typed with full-width characters (NFKC) finds the debtor stored in ASCII."""
    rossi, verdi, bianchi = three
    wide = "".join(chr(ord(ch) + 0xFEE0) for ch in CF_VERDI)
    assert listed(client, f"debtor={wide}") == {verdi.id}
    html = client.get(f"/officer/citizen?cf={CF_PERSON.replace('501', '50１')}").get_data(as_text=True)
    assert set(position_ids(html)) == {rossi.id}


def test_filter_by_notice_number_with_spaces_and_by_iuv(client, admin, three):
    rossi, verdi, bianchi = three
    installment = verdi.installments[1]
    grouped = format_nav(installment.notice_number)
    assert " " in grouped
    assert listed(client, "number=" + grouped.replace(" ", "+")) == {verdi.id}
    assert listed(client, f"number={bianchi.options[0].iuv}") == {bianchi.id}


def test_filter_by_amount_range_in_euro(client, admin, three):
    rossi, verdi, bianchi = three
    assert listed(client, "amount_min=200&amount_max=999,99") == {verdi.id}
    assert listed(client, "amount_min=1.000") == {bianchi.id}
    assert listed(client, "amount_max=100,00") == {rossi.id}


def test_invalid_amount_is_reported_on_the_field_and_ignored(client, admin, three):
    response = client.get("/officer/positions?amount_min=dieci&debtor=mario")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert set(position_ids(html)) == {three[0].id}  # the other filters still apply
    error = re.search(r'<div class="field-error" id="f-amount_min-error">([^<]*)</div>', html)
    assert error
    assert "Importo non valido" in error.group(1)
    assert 'aria-invalid="true"' in html


def test_filter_by_due_dates_and_overdue(client, admin, three):
    rossi, verdi, bianchi = three
    set_due(rossi, date.today() - timedelta(days=10))
    set_due(bianchi, date.today() - timedelta(days=5))
    ledger.transition(db.session, bianchi, PositionStatus.CANCELLED, actor="test")  # closed: not overdue
    db.session.commit()
    assert listed(client, "overdue=1") == {rossi.id}
    since = (date.today() - timedelta(days=6)).isoformat()
    assert listed(client, f"due_from={since}") == {verdi.id, bianchi.id}
    until = (date.today() - timedelta(days=6)).strftime("%d/%m/%Y")
    assert listed(client, f"due_to={until}") == {rossi.id}


# --- Keyset pages ------------------------------------------------------------------------------------------------


def test_load_more_walks_every_row_once(client, admin, make_position, monkeypatch, app):
    monkeypatch.setitem(app.config, "POSITIONS_PAGE_SIZE", 2)
    created = [make_position(external_id=f"p{n}", amount=1000 + n) for n in range(5)]
    first = client.get("/officer/positions").get_data(as_text=True)
    seen = position_ids(first)
    assert len(seen) == 2
    more = re.search(r'hx-get="([^"]+)"\s+hx-target="#positions-more"', first)
    while more:
        url = more.group(1).replace("&amp;", "&")
        assert "after=" in url
        fragment = client.get(url, headers=HX).get_data(as_text=True)
        assert "<html" not in fragment
        assert "<thead" not in fragment
        assert fragment.lstrip().startswith("<tr")
        seen += position_ids(fragment)
        more = re.search(r'hx-get="([^"]+)"\s+hx-target="#positions-more"', fragment)
    assert seen == sorted((p.id for p in created), reverse=True)
    assert "5 posizioni: mostrate 5." in fragment


def test_load_more_without_javascript_shows_the_next_page(client, admin, make_position, monkeypatch, app):
    monkeypatch.setitem(app.config, "POSITIONS_PAGE_SIZE", 2)
    ids = [make_position(external_id=f"p{n}").id for n in range(3)]
    first = client.get("/officer/positions").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" class="btn btn-outline-primary" hx-get', first).group(1).replace("&amp;", "&")
    page = client.get(link)
    html = page.get_data(as_text=True)
    assert "<html" in html
    assert position_ids(html) == [ids[0]]
    assert "3 posizioni: mostrate dalla 3 alla 3." in html


def test_the_list_counts_exactly_up_to_a_bound(ctx, creditor, make_position):
    from portal.ledger import queries

    for _ in range(4):
        make_position()
    flt = queries.PositionFilter()
    assert queries.count_positions(db.session, creditor.id, flt) == queries.Count(4, True)
    assert queries.count_positions(db.session, creditor.id, flt, bound=3) == queries.Count(3, False)


def test_the_list_says_more_than_beyond_the_bound(client, admin, make_position, monkeypatch):
    from portal.ledger import queries

    for _ in range(3):
        make_position()
    monkeypatch.setattr(queries, "COUNT_BOUND", 2)
    assert "Più di 2 posizioni: mostrate 3." in client.get("/officer/positions").get_data(as_text=True)


def test_name_words_in_any_order_find_the_debtor(client, admin, make_position):
    emma = make_position(name="Emma Donati", fiscal_code=CF_VERDI)
    make_position(name="Mario Rossi")
    for text in ("Donati Emma", "emma donati", "don em"):
        html = client.get("/officer/positions", query_string={"debtor": text}).get_data(as_text=True)
        assert position_ids(html) == [emma.id], text
    assert position_ids(client.get("/officer/positions?debtor=emma+rossi").get_data(as_text=True)) == []


# --- Scope -------------------------------------------------------------------------------------------------------


def test_operator_limited_to_a_service_sees_only_it(client, make_user, login, make_position, service, other_service):
    mine = make_position(name="Mario Rossi")
    theirs = make_position(fiscal_code=CF_VERDI, name="Giuseppe Verdi", service=other_service)
    login(make_user("op_tari", role="operator", services=[service]))
    html = client.get("/officer/positions").get_data(as_text=True)
    assert position_ids(html) == [mine.id]
    assert "Giuseppe Verdi" not in html
    # Asking for the other service by filter does not widen the scope.
    assert position_ids(client.get(f"/officer/positions?service_id={other_service.id}").get_data(as_text=True)) == []
    assert client.get(f"/officer/positions/{mine.id}").status_code == 200
    assert client.get(f"/officer/positions/{theirs.id}").status_code == 404
    export = client.get("/officer/positions/export?format=csv").get_data(as_text=True)
    assert mine.iupd in export
    assert theirs.iupd not in export
    citizen = client.get(f"/officer/citizen?cf={CF_VERDI}").get_data(as_text=True)
    assert "Nessuna posizione" in citizen
    assert "Giuseppe Verdi" not in citizen


def test_position_of_another_creditor_is_404(client, admin, other_creditor_position):
    assert client.get(f"/officer/positions/{other_creditor_position.id}").status_code == 404
    assert client.get("/officer/positions/999999").status_code == 404
    assert other_creditor_position.id not in position_ids(client.get("/officer/positions").get_data(as_text=True))


# --- The position page -------------------------------------------------------------------------------------------


def test_position_page_shows_options_transfers_and_the_timeline_once(client, make_user, login, creditor, service):
    officer = make_user("m.bianchi", role="operator")
    position, _ = ledger.create_position(db.session, creditor, position_input(service, installments=(6000, 4000)),
                                         actor=officer.actor, actor_user_id=officer.id)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="system", at=utcnow())
    db.session.commit()
    login(make_user("lettore", role="viewer"))
    response = client.get(f"/officer/positions/{position.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "TARI 2027" in html
    assert f'href="/officer/citizen?cf={CF_PERSON}"' in html
    for option in position.options:
        assert format_nav(option.notice_number) in html
        assert option.iuv in html
    assert "Rata 2" in html
    assert "Unica soluzione" in html
    assert "IT60X0542811101000000123456" in html
    assert "9/0101101IM/" in html
    # The life of the position is told once, by the timeline (no "Ciclo di vita" block repeating its dates).
    assert "Ciclo di vita" not in html
    timeline = html.split('data-testid="timeline"')[1]
    assert "La posizione è stata caricata su pagoPA ed è pagabile." in timeline
    assert "La posizione è stata creata." in timeline
    assert "M.Bianchi" in timeline
    assert "Stato precedente: Bozza" in timeline
    assert "Sistema" in timeline


# --- The citizen page --------------------------------------------------------------------------------------------


def test_citizen_page_totals_and_links(client, admin, make_position, other_service):
    overdue = make_position(amount=10000)
    set_due(overdue, date.today() - timedelta(days=3))
    current = make_position(amount=5000, service=other_service)
    make_position(fiscal_code=CF_VERDI, name="Giuseppe Verdi")
    html = client.get(f"/officer/citizen?cf={CF_PERSON.lower()}").get_data(as_text=True)
    assert "Mario Rossi" in html
    assert "Via Roma" in html
    assert re.search(r'data-testid="total-due">150,00', html)
    assert re.search(r'data-testid="total-overdue">100,00', html)
    assert re.search(r'data-testid="total-paid">0,00', html)
    assert set(position_ids(html)) == {overdue.id, current.id}


def test_citizen_page_keeps_drafts_out_of_what_is_due(client, admin, make_position, make_service):
    imu = make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/", draft_first=True)
    make_position(amount=5000)  # on its way to pagoPA: due
    make_position(amount=20000, service=imu)  # a draft the officer has not published: not due yet
    html = client.get(f"/officer/citizen?cf={CF_PERSON}").get_data(as_text=True)
    assert re.search(r'data-testid="total-due">50,00', html)
    assert "200,00" in html.split('data-testid="total-drafts"')[1]


def test_citizen_page_unknown_and_malformed_codes(client, admin, make_position):
    make_position()
    unknown = client.get(f"/officer/citizen?cf={CF_NERI}").get_data(as_text=True)
    assert f"Nessuna posizione per il codice fiscale {CF_NERI}" in unknown
    malformed = client.get("/officer/citizen?cf=RSSMRA80").get_data(as_text=True)
    error = re.search(r'<div class="field-error" id="cf-error"[^>]*>([^<]+)</div>', malformed)
    assert error
    assert "codice fiscale" in error.group(1).lower()
    assert "Nessuna posizione" not in malformed


# --- Ids out of range --------------------------------------------------------------------------------------------


def test_ids_past_int64_are_404_or_a_filter_message(client, admin, make_position):
    from tests.test_officer_ids import check_ids_out_of_range

    check_ids_out_of_range(client, make_position().id)
