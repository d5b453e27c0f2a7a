"""Codici fiscali, partite IVA, IBANs and CAPs: domain-digest §3."""

import re

import pytest

from portal.ledger.identifiers import (
    IdentifierError,
    normalize_fiscal_code,
    validate_creditor_fiscal_code,
    validate_debtor_fiscal_code,
    validate_iban,
    validate_postal_code,
    validate_vat_number,
)


@pytest.mark.parametrize(
    "code",
    [
        "RCCMNL83S18D969H",
        "RSSMRA80A01H501U",
        "RCCMNL83S58D969L",  # a woman: day + 40
    ],
)
def test_valid_person_codes(code):
    assert validate_debtor_fiscal_code(code) == (code, "F")


def test_person_code_is_trimmed_and_upper_cased():
    assert validate_debtor_fiscal_code("  rccmnl83s18 d969h ") == ("RCCMNL83S18D969H", "F")


@pytest.mark.parametrize("code", ["RCCMNL83S18D96VW", "RCCMNL83S18D9SVI"])
def test_omocodic_codes_are_accepted_and_not_normalised(code):
    """An omocodic code is the person's real code: mapping its letters back would name someone else."""
    assert validate_debtor_fiscal_code(code) == (code, "F")
    assert validate_debtor_fiscal_code(code.lower()) == (code, "F")
    assert normalize_fiscal_code(code) == code


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("RCCMNL83S18D969A", "carattere di controllo errato"),  # wrong check character
        ("RCCMNL83S18D96VH", "carattere di controllo errato"),  # omocodic variant with the base's check char
        ("RCCMNL83Z18D969S", "formato errato"),  # month Z does not exist (check char correct)
        ("RCCMNL83B31D969E", "non è valida"),  # 31 February (check char correct)
        ("RCCMNL83S18D969", "16 caratteri"),  # 15 characters
        ("RCCMNL83S18D969HX", "16 caratteri"),  # 17 characters
        ("RCCMNL83S18D96", "16 caratteri"),
        ("", "Indicare"),
        (None, "Indicare"),
    ],
)
def test_invalid_person_codes(code, reason):
    with pytest.raises(IdentifierError, match=reason):
        validate_debtor_fiscal_code(code)


def test_person_code_for_a_legal_person_is_refused():
    with pytest.raises(IdentifierError, match="11 cifre"):
        validate_debtor_fiscal_code("RCCMNL83S18D969H", kind="G")


def test_numeric_codes_luhn():
    assert validate_debtor_fiscal_code("00743110157") == ("00743110157", "G")
    # A person may hold a temporary 11-digit code.
    assert validate_debtor_fiscal_code("00743110157", kind="F") == ("00743110157", "F")
    assert validate_debtor_fiscal_code("80015010723") == ("80015010723", "G")
    with pytest.raises(IdentifierError, match="cifra di controllo"):
        validate_debtor_fiscal_code("00743110158")


@pytest.mark.parametrize("code", ["0074311015", "007431101577", "0074311015A"])
def test_numeric_codes_of_wrong_shape(code):
    with pytest.raises(IdentifierError):
        validate_debtor_fiscal_code(code)


def test_creditor_fiscal_code():
    assert validate_creditor_fiscal_code(" 00743110157 ") == "00743110157"
    with pytest.raises(IdentifierError, match="11 cifre"):
        validate_creditor_fiscal_code("RCCMNL83S18D969H")
    with pytest.raises(IdentifierError, match="cifra di controllo"):
        validate_creditor_fiscal_code("00743110158")


def test_vat_number():
    assert validate_vat_number("IT00743110157") == "00743110157"
    with pytest.raises(IdentifierError, match="Partita IVA"):
        validate_vat_number("00743110158")


@pytest.mark.parametrize(
    ("text", "compact"),
    [
        ("IT60X0542811101000000123456", "IT60X0542811101000000123456"),
        ("it60 x054 2811 1010 0000 0123 456", "IT60X0542811101000000123456"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
    ],
)
def test_valid_ibans(text, compact):
    assert validate_iban(text) == compact


@pytest.mark.parametrize(
    "text",
    [
        "IT60X0542811101000000123457",  # wrong check digits
        "IT61X0542811101000000123456",
        "IT60X054281110100000012345",  # too short
        "XX60X0542811101000000123456",
        "",
        None,
    ],
)
def test_invalid_ibans(text):
    with pytest.raises(IdentifierError, match="IBAN non valido") as refused:
        validate_iban(text)
    assert re.fullmatch(r"IBAN non valido: [a-zàèéìòù() ]+\.", str(refused.value)), str(refused.value)  # Italian


def test_the_iban_message_says_what_is_wrong_in_italian():
    with pytest.raises(IdentifierError, match="le cifre di controllo non corrispondono"):
        validate_iban("IT60X0542811101000000123457")
    with pytest.raises(IdentifierError, match="lunghezza"):
        validate_iban("IT60X054281110100000012345")


def test_postal_codes():
    assert validate_postal_code("00100") == "00100"
    assert validate_postal_code(" 20121 ") == "20121"
    for bad in ("0010", "001000", "ABCDE", "", None):
        with pytest.raises(IdentifierError, match="5 cifre"):
            validate_postal_code(bad)
    assert validate_postal_code(" SW1A 1AA ", country="GB") == "SW1A 1AA"


# --- Unicode look-alikes and all-zero numbers (issue 10, item 7) ---------------------------------------------------


def test_full_width_characters_are_normalised_to_the_ascii_code():
    """NFKC first: a full-width ２ typed from a phone is the code itself, never a second spelling of it."""
    assert validate_debtor_fiscal_code("RSSMRA85T10A56２S") == ("RSSMRA85T10A562S", "F")
    assert validate_debtor_fiscal_code("ＲＳＳＭＲＡ８５Ｔ１０Ａ５６２Ｓ") == ("RSSMRA85T10A562S", "F")
    assert validate_debtor_fiscal_code("0074311015７") == ("00743110157", "G")
    assert validate_creditor_fiscal_code("0074311015７") == "00743110157"
    assert validate_vat_number("0074311015７") == "00743110157"
    assert normalize_fiscal_code(" rssmra85t10a56２s ") == "RSSMRA85T10A562S"


@pytest.mark.parametrize("code", [
    "RSSMRA85T10A56٢S",  # an Arabic-Indic two: a digit to Python, not to NFKC
    "RSSМRA85T10A562S",  # a Cyrillic М
    "RSSMRÀ85T10A562S",
    "RSSMRA85T10A562ß",  # upper-cased, ß would become the ASCII "SS"
    "0074311015٧",
])
def test_what_is_not_ascii_after_nfkc_is_refused(code):
    with pytest.raises(IdentifierError, match="solo lettere e cifre"):
        validate_debtor_fiscal_code(code)


def test_non_ascii_digits_are_refused_for_entes_and_vat_numbers():
    with pytest.raises(IdentifierError, match="11 cifre"):
        validate_creditor_fiscal_code("0074311015٧")
    with pytest.raises(IdentifierError, match="solo lettere e cifre"):
        validate_vat_number("0074311015٧")


def test_all_zero_numbers_are_refused():
    """Eleven zeros pass the Luhn check; no Ente, company or person holds them."""
    with pytest.raises(IdentifierError, match="soli zeri"):
        validate_debtor_fiscal_code("00000000000")
    with pytest.raises(IdentifierError, match="soli zeri"):
        validate_debtor_fiscal_code("00000000000", kind="F")
    with pytest.raises(IdentifierError, match="soli zeri"):
        validate_creditor_fiscal_code("00000000000")
    with pytest.raises(IdentifierError, match="soli zeri"):
        validate_vat_number("IT00000000000")
    with pytest.raises(IdentifierError, match="soli zeri"):
        validate_debtor_fiscal_code("０００００００００００")
