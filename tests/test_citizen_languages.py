"""The Flask-Babel catalogues: they compile, the Italian one holds every text of the code and the templates, and a
citizen who picks German or English gets the page in that language where it is translated, Italian elsewhere."""

import io
import re
from pathlib import Path

import pytest
from babel.messages import extract
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from portal import i18n
from tests.conftest import CF_PERSON

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "translations"
KEYWORDS = {**extract.DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None, "N_": None}


def catalogue(language: str):
    with (CATALOGUES / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=language)


@pytest.mark.parametrize("language", ["it", "de", "en"])
def test_each_catalogue_compiles_without_errors(language):
    messages = catalogue(language)
    assert not messages.fuzzy, "the header is marked fuzzy: pybabel compile would skip the catalogue"
    problems = [(m.id, errors) for m in messages if m.id for errors in [m.check(messages)] if errors]
    assert problems == []
    out = io.BytesIO()
    write_mo(out, messages)
    assert len(out.getvalue()) > 100


def test_the_italian_catalogue_holds_every_text_of_the_code_and_the_templates():
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    extracted = {message[2] if isinstance(message[2], str) else message[2][0]
                 for message in extract.extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)}
    italian = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalogue("it") if m.id}
    missing = sorted(extracted - set(italian))
    assert missing == [], f"run `make translations`: {missing[:5]}"
    untranslated = sorted(key for key, m in italian.items() if not all(m.string if m.pluralizable else [m.string]))
    assert untranslated == []
    # German and English are started from the same template.
    assert {m.id for m in catalogue("de") if m.id} == {m.id for m in catalogue("en") if m.id} == {
        m.id for m in catalogue("it") if m.id}


def test_without_the_app_the_domain_texts_are_the_italian_source(monkeypatch):
    monkeypatch.setattr(i18n, "_translator", None)
    assert i18n.gettext("Rata %(n)s di %(total)s", n=2, total=3) == "Rata 2 di 3"
    assert i18n.N_("Campo obbligatorio.") == "Campo obbligatorio."


@pytest.fixture
def german(app, tmp_path, monkeypatch):
    """The German catalogue of the repository plus two translations, served from a directory of the test's own."""
    import flask_babel

    messages = catalogue("de")
    for source, german_text in {
        "Pagamenti pagoPA": "pagoPA-Zahlungen",
        "Campo obbligatorio.": "Pflichtfeld.",
        "Questo avviso è stato annullato dal Comune: non deve essere pagato.":
            "Diese Zahlungsaufforderung wurde von der Gemeinde storniert.",
    }.items():
        assert source in messages, source
        messages[source].string = german_text
    target = tmp_path / "de" / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "messages.mo").open("wb") as handle:
        write_mo(handle, messages)
    config = app.extensions["babel"]
    monkeypatch.setattr(config, "translation_directories", [str(tmp_path)])
    with app.app_context():
        flask_babel.get_domain().cache.clear()
    yield
    with app.app_context():
        flask_babel.get_domain().cache.clear()


def test_a_citizen_switches_to_german_and_back(client, ctx, form_service, german):
    form_service()
    page = client.get("/?lang=de").get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "pagoPA-Zahlungen" in page
    assert "Servizi pagabili online" in page  # not translated yet: Italian
    # The choice stays with the session, on every page, also for the texts of the Flask-free layers.
    posted = client.post("/servizi/CERT", data={"codice_fiscale": "", "nome": "", "tipo_certificato": "",
                                                "_voce": "0"})
    assert posted.status_code == 422
    assert "Pflichtfeld." in posted.get_data(as_text=True)
    italian = client.get("/servizi/CERT?lang=it").get_data(as_text=True)
    assert '<html lang="it">' in italian
    assert "pagoPA-Zahlungen" not in italian


def test_english_falls_back_to_italian_where_untranslated(client, ctx, form_service):
    form_service()
    page = client.get("/servizi/CERT?lang=en")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert '<html lang="en">' in body
    assert "Dati del pagamento" in body
    assert re.search(r'<a [^>]*href="/servizi/CERT\?lang=it"[^>]*lang="it"', body)


def test_an_unknown_language_keeps_italian(client, ctx, form_service):
    form_service()
    body = client.get("/?lang=xx").get_data(as_text=True)
    assert '<html lang="it">' in body


def test_a_domain_explanation_follows_the_language(client, ctx, pagopa, make_position, german):
    from portal.extensions import db
    from portal.ledger import services as ledger
    from portal.ledger.models import Position

    position = make_position(amount=1500)
    pagopa.run_pending()
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    ledger.cancel_position(db.session, position, actor="test", reason="errore")
    db.session.commit()
    client.get("/avviso?lang=de")
    found = client.post("/avviso", data={"codice_avviso": position.options[0].notice_number,
                                         "codice_fiscale": CF_PERSON})
    assert "Diese Zahlungsaufforderung wurde von der Gemeinde storniert." in found.get_data(as_text=True)
