"""Parsing and formatting euro amounts (integer cents everywhere)."""

import pytest

from portal.money import AmountError, cents_to_decimal_text, format_euro, parse_euro


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("1.020,99", 102099),
        ("10", 1000),
        ("10,5", 1050),
        ("1020.99", 102099),
        ("1.020", 102000),
        ("1.234.567,89", 123456789),
        ("0,01", 1),
        ("1.5", 150),
        ("1020,99", 102099),
        (" 12,00 € ", 1200),
        ("€12", 1200),
        ("1\u00a0020,99\u00a0€", 102099),
        ("999.999.999,99", 99_999_999_999),
    ],
)
def test_parse_euro(text, cents):
    assert parse_euro(text) == cents


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "maggiore di zero"),
        ("0,00", "maggiore di zero"),
        ("-5", "negativo"),
        ("abc", "non valido"),
        ("1,234", "due decimali"),
        ("1.0200", "due decimali"),
        ("", "Indicare"),
        ("   ", "Indicare"),
        (None, "Indicare"),
        ("1,020.99", "non valido"),
        ("1.02.3", "non valido"),
        ("12,", "non valido"),
        ("1.000.000.000,00", "massimo"),
    ],
)
def test_parse_euro_rejects(text, message):
    with pytest.raises(AmountError, match=message):
        parse_euro(text)


def test_parse_euro_allow_zero():
    assert parse_euro("0", allow_zero=True) == 0
    assert parse_euro("0,00", allow_zero=True) == 0


def test_amount_error_is_a_value_error():
    assert issubclass(AmountError, ValueError)


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (102099, "1.020,99\u00a0€"),
        (5, "0,05\u00a0€"),
        (100, "1,00\u00a0€"),
        (123456789, "1.234.567,89\u00a0€"),
        (-1050, "-10,50\u00a0€"),
        (0, "0,00\u00a0€"),
    ],
)
def test_format_euro(cents, text):
    assert format_euro(cents) == text


def test_format_euro_without_symbol_and_none():
    assert format_euro(102099, symbol=False) == "1.020,99"
    assert format_euro(None) == ""


@pytest.mark.parametrize("cents", [1, 99, 100, 101, 102099, 100000, 99_999_999_999])
def test_format_then_parse_round_trips(cents):
    assert parse_euro(format_euro(cents)) == cents
    assert parse_euro(cents_to_decimal_text(cents)) == cents


def test_cents_to_decimal_text():
    assert cents_to_decimal_text(102099) == "1020.99"
    assert cents_to_decimal_text(5) == "0.05"
    assert cents_to_decimal_text(-150) == "-1.50"
