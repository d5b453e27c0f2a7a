"""Validation of the identifiers people type: codici fiscali, partite IVA, IBANs, CAP.

Backed by python-stdnum and schwifty; messages are Italian, ready for a form field or an import row.
"""

import functools
import re
import unicodedata

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import luhn
from stdnum.exceptions import ValidationError
from stdnum.it import codicefiscale, iva


class IdentifierError(ValueError):
    """An identifier failed validation; the message says why, in Italian."""


#: What a normalised fiscal code may contain: ASCII letters and digits only.
_ASCII_CODE = re.compile(r"[A-Z0-9]+")


@functools.lru_cache(maxsize=8192)
def normalize_fiscal_code(text: str) -> str:
    """NFKC (full-width ``２`` is ``2``), drop spaces, upper-case ASCII; never map omocodic letters back (they are
    the person's real code). Anything still not ASCII is kept as is, for the validators to refuse: upper-casing
    it could turn it into ASCII (``ß`` is ``SS``)."""
    code = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))
    return code.upper() if code.isascii() else code


def _check_characters(code: str, what: str) -> None:
    """Refuse what NFKC left outside ASCII letters and digits, so one code is never stored under two spellings."""
    if not _ASCII_CODE.fullmatch(code):
        raise IdentifierError(f"{what} può contenere solo lettere e cifre (A-Z, 0-9).")


def _check_not_all_zeros(code: str, invalid: str) -> None:
    """Eleven zeros pass the Luhn check, but no Ente, company or person holds them."""
    if code and not code.strip("0"):
        raise IdentifierError(f"{invalid}: è composto da soli zeri.")


@functools.lru_cache(maxsize=8192)
def validate_debtor_fiscal_code(text: str, kind: str | None = None) -> tuple[str, str]:
    """Validate a debtor's codice fiscale (16 chars, person) or 11-digit numeric code.

    :param kind: ``F`` (natural person) or ``G`` (legal person) if the caller knows it.
    :return: the normalised code and the debtor kind it implies (``F`` for 16 chars, ``G`` for 11 digits
        unless ``kind`` says ``F``: persons may hold a temporary 11-digit code).
    :raise IdentifierError: if the code is malformed or its check character is wrong.

    Cached, as the other validators here: a bill run names a debtor on each of their rows and a few beneficiaries
    on every row (a refused code raises and is not cached).
    """
    code = normalize_fiscal_code(text)
    if not code:
        raise IdentifierError("Indicare il codice fiscale.")
    _check_characters(code, "Il codice fiscale")
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
        _check_not_all_zeros(code, f"Codice fiscale/partita IVA {code} non valido")
        if not luhn.is_valid(code):
            raise IdentifierError(f"Codice fiscale/partita IVA {code} non valido: cifra di controllo errata.")
        return code, kind or "G"
    raise IdentifierError("Il codice fiscale deve avere 16 caratteri (persona) o 11 cifre (ente o impresa).")


@functools.lru_cache(maxsize=1024)
def validate_creditor_fiscal_code(text: str, *, whose: str = "dell'ente") -> str:
    """Validate an Ente's fiscal code (the creditor's, or a transfer beneficiary's): exactly 11 digits, not all
    zeros, with a correct check digit.

    :param whose: how the message names the holder (``"del beneficiario"``).
    """
    code = normalize_fiscal_code(text)
    if len(code) != 11 or not code.isascii() or not code.isdigit():
        raise IdentifierError(f"Il codice fiscale {whose} deve essere di 11 cifre.")
    _check_not_all_zeros(code, f"Codice fiscale {code} non valido")
    if not luhn.is_valid(code):
        raise IdentifierError(f"Codice fiscale {code} non valido: cifra di controllo errata.")
    return code


def validate_vat_number(text: str) -> str:
    """Validate a partita IVA (Luhn plus office code), as python-stdnum does."""
    code = normalize_fiscal_code(text).removeprefix("IT")
    if code:
        _check_characters(code, "La partita IVA")
    _check_not_all_zeros(code, f"Partita IVA {code} non valida")
    try:
        return iva.validate(code)
    except ValidationError as exc:
        raise IdentifierError(f"Partita IVA {code} non valida: {_why(exc)}.") from exc


#: Why schwifty refused an IBAN, in Italian (its own messages are English).
IBAN_PROBLEMS = {
    "InvalidChecksumDigits": "le cifre di controllo non corrispondono",
    "InvalidLength": "la lunghezza non è quella prevista per il paese",
    "InvalidCountryCode": "il codice del paese non è valido",
    "InvalidStructure": "contiene caratteri non ammessi o nella posizione sbagliata",
    "InvalidBBANChecksum": "il codice di controllo nazionale (CIN) non corrisponde",
    "NationalChecksumNotVerified": "il codice di controllo nazionale (CIN) non corrisponde",
    "InvalidBankCode": "il codice della banca (ABI) non è valido",
    "InvalidBranchCode": "il codice dello sportello (CAB) non è valido",
    "InvalidAccountCode": "il numero di conto non è valido",
}


@functools.lru_cache(maxsize=4096)
def validate_iban(text: str) -> str:
    """Validate an IBAN (structure, country rules and check digits); return it compact and upper-case.

    Cached: a bill run repeats the same few IBANs on every row (a refused one raises and is not cached).
    """
    try:
        return str(IBAN(text or "").compact)
    except SchwiftyException as exc:
        why = next((IBAN_PROBLEMS[cls.__name__] for cls in type(exc).__mro__ if cls.__name__ in IBAN_PROBLEMS),
                   "non è un IBAN")
        raise IdentifierError(f"IBAN non valido: {why}.") from exc


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
