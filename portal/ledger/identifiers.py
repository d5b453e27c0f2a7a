"""Validation of the identifiers people type: codici fiscali, partite IVA, IBANs, CAP.

Backed by python-stdnum and schwifty; messages are Italian, ready for a form field or an import row.
"""

import re

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import luhn
from stdnum.exceptions import ValidationError
from stdnum.it import codicefiscale, iva


class IdentifierError(ValueError):
    """An identifier failed validation; the message says why, in Italian."""


def normalize_fiscal_code(text: str) -> str:
    """Trim, drop spaces and upper-case (never map omocodic letters back: they are the person's real code)."""
    return re.sub(r"\s+", "", text or "").upper()


def validate_debtor_fiscal_code(text: str, kind: str | None = None) -> tuple[str, str]:
    """Validate a debtor's codice fiscale (16 chars, person) or 11-digit numeric code.

    :param kind: ``F`` (natural person) or ``G`` (legal person) if the caller knows it.
    :return: the normalised code and the debtor kind it implies (``F`` for 16 chars, ``G`` for 11 digits
        unless ``kind`` says ``F``: persons may hold a temporary 11-digit code).
    :raise IdentifierError: if the code is malformed or its check character is wrong.
    """
    code = normalize_fiscal_code(text)
    if not code:
        raise IdentifierError("Indicare il codice fiscale.")
    if len(code) == 16:
        try:
            codicefiscale.validate(code)
        except ValidationError as exc:
            raise IdentifierError(f"Codice fiscale {code} non valido: {_why(exc)}.") from exc
        if kind == "G":
            raise IdentifierError("Una persona giuridica ha un codice fiscale numerico di 11 cifre.")
        return code, "F"
    if len(code) == 11 and code.isdigit():
        # Luhn only: the office-code rule of partite IVA does not hold for every numeric codice fiscale.
        if not luhn.is_valid(code):
            raise IdentifierError(f"Codice fiscale/partita IVA {code} non valido: cifra di controllo errata.")
        return code, kind or "G"
    raise IdentifierError("Il codice fiscale deve avere 16 caratteri (persona) o 11 cifre (ente o impresa).")


def validate_creditor_fiscal_code(text: str) -> str:
    """Validate an Ente's fiscal code: exactly 11 digits with a correct check digit."""
    code = normalize_fiscal_code(text)
    if len(code) != 11 or not code.isdigit():
        raise IdentifierError("Il codice fiscale dell'ente deve essere di 11 cifre.")
    if not luhn.is_valid(code):
        raise IdentifierError(f"Codice fiscale {code} non valido: cifra di controllo errata.")
    return code


def validate_vat_number(text: str) -> str:
    """Validate a partita IVA (Luhn plus office code), as python-stdnum does."""
    code = normalize_fiscal_code(text).removeprefix("IT")
    try:
        return iva.validate(code)
    except ValidationError as exc:
        raise IdentifierError(f"Partita IVA {code} non valida: {_why(exc)}.") from exc


def validate_iban(text: str) -> str:
    """Validate an IBAN (structure, country rules and check digits); return it compact and upper-case."""
    try:
        return str(IBAN(text or "").compact)
    except SchwiftyException as exc:
        raise IdentifierError(f"IBAN non valido ({exc}).") from exc


def validate_postal_code(text: str, country: str = "IT") -> str:
    """An Italian CAP is five digits; foreign codes are only trimmed."""
    code = (text or "").strip()
    if country == "IT" and not re.fullmatch(r"\d{5}", code):
        raise IdentifierError("Il CAP deve essere di 5 cifre.")
    return code


_REASONS = {
    "InvalidChecksum": "carattere di controllo errato",
    "InvalidLength": "lunghezza errata",
    "InvalidFormat": "formato errato",
    "InvalidComponent": "una parte del codice non è valida",
}


def _why(exc: ValidationError) -> str:
    return _REASONS.get(type(exc).__name__, "formato errato")
