"""Debtor data shared by services changes only by an officer who sees them all (issue 10, item 5).

A MENSA operator typing the fiscal code of a TARI-only debtor must not rewrite the name, address and e-mail the
TARI positions (their notices, GPD, e-mails) use: what they typed goes on a version of the debtor for the new
position alone, and they are told.
"""

import shutil
import subprocess

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Debtor, Position
from portal.notices import render_notice
from portal.pagopa.mapping import position_payload
from tests.conftest import CF_PERSON, position_input
from tests.prerequisites import require
from tests.test_officer_entry import URL, flashes, form


@pytest.fixture
def mensa(make_service):
    return make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0101101IM/")


@pytest.fixture
def tari_position(creditor, service):
    """Mario Rossi's TARI position, entered by the tax office with his full contact data."""
    data = position_input(service)
    data.debtor.email = "mario.rossi@example.it"
    data.debtor.phone = "06 1234567"
    position, _ = ledger.create_position(db.session, creditor, data, actor="test")
    db.session.commit()
    return position


def mensa_input(mensa):
    """The same fiscal code as the canteen office types it: another name, address and e-mail, no phone."""
    data = position_input(mensa, name="Mario Rossi (genitore)")
    data.subject = "Mensa gennaio"
    data.debtor.street = "Via Milano"
    data.debtor.civic_number = "7"
    data.debtor.postal_code = "20121"
    data.debtor.city = "Milano"
    data.debtor.province = "MI"
    data.debtor.email = "genitore@example.it"
    return data


def debtor_rows() -> list[Debtor]:
    return list(db.session.scalars(sa.select(Debtor).order_by(Debtor.id)))


def assert_tari_untouched(tari_position):
    db.session.expire_all()
    debtor = db.session.get(Position, tari_position.id).debtor
    assert (debtor.name, debtor.street, debtor.city, debtor.email, debtor.phone) == (
        "Mario Rossi", "Via Roma", "Roma", "mario.rossi@example.it", "06 1234567")
    assert debtor.version_of_id is None


# --- The ledger ------------------------------------------------------------------------------------------------


def test_scoped_actor_does_not_rewrite_a_debtor_of_other_services(creditor, tari_position, mensa):
    position, created = ledger.create_position(db.session, creditor, mensa_input(mensa), actor="test",
                                               visible_service_ids={mensa.id})
    db.session.commit()
    assert created
    assert_tari_untouched(tari_position)
    version = db.session.get(Position, position.id).debtor
    assert version.version_of_id == tari_position.debtor_id
    assert version.fiscal_code == CF_PERSON
    assert (version.name, version.street, version.civic_number, version.postal_code, version.city,
            version.province, version.email) == (
        "Mario Rossi (genitore)", "Via Milano", "7", "20121", "Milano", "MI", "genitore@example.it")
    # Only what was typed: nothing of the shared row the canteen office cannot see.
    assert version.phone is None
    assert len(debtor_rows()) == 2


def test_gpd_payload_and_notice_use_each_positions_own_data(creditor, tari_position, mensa, tmp_path):
    position, _ = ledger.create_position(db.session, creditor, mensa_input(mensa), actor="test",
                                         visible_service_ids={mensa.id})
    db.session.commit()
    db.session.expire_all()
    new, old = db.session.get(Position, position.id), db.session.get(Position, tari_position.id)

    payload = position_payload(new)
    assert (payload["fiscalCode"], payload["fullName"], payload["streetName"], payload["city"],
            payload["email"]) == (CF_PERSON, "Mario Rossi (genitore)", "Via Milano", "Milano", "genitore@example.it")
    payload = position_payload(old)
    assert (payload["fullName"], payload["streetName"], payload["city"], payload["email"]) == (
        "Mario Rossi", "Via Roma", "Roma", "mario.rossi@example.it")

    require("pdftotext")
    for item, present, absent in ((new, "Via Milano", "Via Roma"), (old, "Via Roma", "Via Milano")):
        pdf = tmp_path / f"{item.id}.pdf"
        pdf.write_bytes(render_notice(item, creditor=creditor))
        text = subprocess.run([shutil.which("pdftotext"), "-layout", str(pdf), "-"],  # noqa: S603
                              check=True, capture_output=True, text=True).stdout
        assert present in text
        assert absent not in text


def test_identical_data_reuses_the_shared_debtor(creditor, tari_position, mensa):
    data = position_input(mensa)
    data.debtor.email = "mario.rossi@example.it"
    data.debtor.phone = "06 1234567"
    position, _ = ledger.create_position(db.session, creditor, data, actor="test", visible_service_ids={mensa.id})
    db.session.commit()
    assert position.debtor_id == tari_position.debtor_id
    assert len(debtor_rows()) == 1


def test_actor_who_sees_every_service_of_the_debtor_updates_it(creditor, service, tari_position, mensa):
    # An operator of both services, and an unscoped one (None: every service).
    for scope, name in (({service.id, mensa.id}, "Mario Rossi Bianchi"), (None, "Mario Rossi Verdi")):
        data = mensa_input(mensa)
        data.debtor.name = name
        position, _ = ledger.create_position(db.session, creditor, data, actor="test", visible_service_ids=scope)
        db.session.commit()
        assert position.debtor_id == tari_position.debtor_id
        assert tari_position.debtor.name == name
        assert tari_position.debtor.street == "Via Milano"
    assert len(debtor_rows()) == 1


def test_later_positions_update_the_shared_row_not_the_versions(creditor, service, tari_position, mensa):
    mine, _ = ledger.create_position(db.session, creditor, mensa_input(mensa), actor="test",
                                     visible_service_ids={mensa.id})
    db.session.commit()
    data = position_input(service, name="Mario Rossi Aggiornato")
    again, _ = ledger.create_position(db.session, creditor, data, actor="test")  # the tax office, unscoped
    db.session.commit()
    assert again.debtor_id == tari_position.debtor_id
    assert tari_position.debtor.name == "Mario Rossi Aggiornato"
    assert mine.debtor.name == "Mario Rossi (genitore)"


def test_one_shared_row_per_fiscal_code_in_the_schema(creditor, tari_position):
    db.session.add(Debtor(creditor_id=creditor.id, kind="F", fiscal_code=CF_PERSON, name="Doppione"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


# --- The officer's pages ---------------------------------------------------------------------------------------


def mensa_form(mensa):
    return form(mensa, debtor_name="Mario Rossi (genitore)", debtor_street="Via Milano", debtor_civic_number="7",
                debtor_postal_code="20121", debtor_city="Milano", debtor_province="MI",
                debtor_email="genitore@example.it", subject="Mensa gennaio")


def test_mensa_operator_entry_keeps_tari_data_and_says_so(client, make_user, login, tari_position, mensa):
    login(make_user(username="mensa", role="operator", services=[mensa]))
    response = client.post(URL, data=mensa_form(mensa))
    assert response.status_code == 303
    assert_tari_untouched(tari_position)
    warnings = [message for category, message in flashes(client) if category == "warning"]
    assert len(warnings) == 1
    assert "I dati anagrafici esistenti del contribuente non sono stati modificati" in warnings[0]

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "I dati anagrafici esistenti del contribuente non sono stati modificati" in page
    assert 'data-testid="debtor-version"' in page
    assert "Mario Rossi (genitore)" in page

    # The citizen page of the canteen office shows what it typed, never the tax office's data.
    citizen = client.get(f"/officer/citizen?cf={CF_PERSON}").get_data(as_text=True)
    assert "Via Milano" in citizen
    assert "genitore@example.it" in citizen
    assert "Via Roma" not in citizen
    assert "mario.rossi@example.it" not in citizen


def test_unscoped_operator_entry_updates_the_debtor_without_warning(client, make_user, login, tari_position, mensa):
    login(make_user(username="tutti", role="operator"))
    assert client.post(URL, data=mensa_form(mensa)).status_code == 303
    assert not [m for c, m in flashes(client) if c == "warning"]
    db.session.expire_all()
    assert db.session.get(Position, tari_position.id).debtor.street == "Via Milano"
    assert len(debtor_rows()) == 1


def test_admin_citizen_page_shows_the_shared_debtor_and_every_position(client, make_user, login, creditor,
                                                                       tari_position, mensa):
    position, _ = ledger.create_position(db.session, creditor, mensa_input(mensa), actor="test",
                                         visible_service_ids={mensa.id})
    db.session.commit()
    login(make_user(username="admin", role="admin"))
    citizen = client.get(f"/officer/citizen?cf={CF_PERSON}").get_data(as_text=True)
    assert "Via Roma" in citizen
    assert f'href="/officer/positions/{position.id}"' in citizen
    assert f'href="/officer/positions/{tari_position.id}"' in citizen
    listed = client.get(f"/officer/positions?debtor={CF_PERSON}").get_data(as_text=True)
    assert f'href="/officer/positions/{position.id}"' in listed
    assert f'href="/officer/positions/{tari_position.id}"' in listed
