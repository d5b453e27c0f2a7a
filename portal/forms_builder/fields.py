"""The kinds of field a payment form offers, and how one typed answer is read and checked.

Answers arrive as text (an HTML form); each kind turns it into a JSON-friendly value (``str``, ``int``, ``bool``,
an ISO date) or an Italian message for the citizen. Every kind has a hard length limit, whatever the officer set,
so nothing unbounded is ever stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from portal.i18n import _
from portal.ledger.identifiers import IdentifierError, validate_debtor_fiscal_code

#: Kind → the label officers read in the builder.
KINDS = {
    "text": "Testo",
    "number": "Numero intero",
    "date": "Data",
    "choice": "Scelta da un elenco",
    "checkbox": "Casella di spunta",
    "fiscal_code": "Codice fiscale",
    "email": "E-mail",
    "plate": "Targa",
}
#: Longest text any answer may have, whatever the form says.
TEXT_HARD_MAX = 500
#: Longest raw input read for any field (a number, a date, a code are far shorter).
RAW_HARD_MAX = 1000
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
EMAIL_MAX = 254
#: Italian plates: cars AA000AA, motorcycles AA00000, mopeds X00000, old and special series; letters and digits.
PLATE_RE = re.compile(r"^(?=.*[A-Z])(?=.*\d)[A-Z0-9]{5,8}$")
NUMBER_MAX = 1_000_000


@dataclass(frozen=True)
class FieldSpec:
    """One field of a form: ``key`` names it in templates and answers, ``label`` is what the citizen reads."""

    key: str
    label: str
    kind: str = "text"
    required: bool = False
    help: str = ""
    min_length: int | None = None
    max_length: int | None = None
    #: For ``number``: the smallest and largest value accepted.
    min_value: int | None = None
    max_value: int | None = None
    #: For ``choice``: the options offered.
    choices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text_max(self) -> int:
        """The longest text accepted for this field."""
        if self.kind == "email":
            return EMAIL_MAX
        return min(self.max_length or TEXT_HARD_MAX, TEXT_HARD_MAX)

    def to_dict(self) -> dict:
        """A JSON-friendly copy (only what is set)."""
        data = {"key": self.key, "label": self.label, "kind": self.kind, "required": self.required}
        for name in ("help", "min_length", "max_length", "min_value", "max_value"):
            value = getattr(self, name)
            if value not in (None, ""):
                data[name] = value
        if self.choices:
            data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FieldSpec:
        """The field stored by :meth:`to_dict`."""
        return cls(key=data["key"], label=data["label"], kind=data.get("kind", "text"),
                   required=bool(data.get("required")), help=data.get("help") or "",
                   min_length=data.get("min_length"), max_length=data.get("max_length"),
                   min_value=data.get("min_value"), max_value=data.get("max_value"),
                   choices=tuple(data.get("choices") or ()))


class AnswerError(ValueError):
    """An answer is not acceptable; the message is for the citizen, in Italian."""


def read_answer(spec: FieldSpec, raw: str | None, *, today: date):
    """The value of one answer (``None`` when left empty and not required).

    :raise AnswerError: with the reason, in Italian.
    """
    text = (raw or "")[:RAW_HARD_MAX]
    if spec.kind == "checkbox":
        checked = text.strip().lower() in ("1", "on", "true", "si", "sì", "y", "yes")
        if spec.required and not checked:
            raise AnswerError(_("Questa casella è obbligatoria."))
        return checked
    text = " ".join(text.split()) if spec.kind != "text" else text.strip()
    if not text:
        if spec.required:
            raise AnswerError(_("Campo obbligatorio."))
        return None
    reader = _READERS[spec.kind]
    return reader(spec, text, today)


def _text(spec: FieldSpec, text: str, today: date) -> str:
    if len(text) > spec.text_max:
        raise AnswerError(_("Al massimo %(max)s caratteri (ne sono stati scritti %(n)s).", max=spec.text_max,
                            n=len(text)))
    if spec.min_length and len(text) < spec.min_length:
        raise AnswerError(_("Almeno %(n)s caratteri.", n=spec.min_length))
    return text


def _number(spec: FieldSpec, text: str, today: date) -> int:
    cleaned = text.replace(".", "").replace(" ", "")
    if not (cleaned.isascii() and cleaned.lstrip("-").isdigit()) or len(cleaned) > 9:
        raise AnswerError(_("Indicare un numero intero, senza decimali."))
    value = int(cleaned)
    low = spec.min_value if spec.min_value is not None else 0
    high = spec.max_value if spec.max_value is not None else NUMBER_MAX
    if value < low:
        raise AnswerError(_("Il valore minimo è %(n)s.", n=low))
    if value > high:
        raise AnswerError(_("Il valore massimo è %(n)s.", n=high))
    return value


def parse_date(text: str) -> date | None:
    """An ISO date (what ``<input type=date>`` sends) or ``gg/mm/aaaa``; ``None`` if it is neither."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        m = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", text)
        if m:
            return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    except ValueError:
        return None
    return None


def _date(spec: FieldSpec, text: str, today: date) -> str:
    value = parse_date(text)
    if value is None:
        raise AnswerError(_("Indicare una data valida (gg/mm/aaaa)."))
    if value.year < 1900 or value.year > today.year + 10:
        raise AnswerError(_("La data è fuori dall'intervallo ammesso."))
    return value.isoformat()


def _choice(spec: FieldSpec, text: str, today: date) -> str:
    if text not in spec.choices:
        raise AnswerError(_("Scegliere una delle voci dell'elenco."))
    return text


def _fiscal_code(spec: FieldSpec, text: str, today: date) -> str:
    if len(text) > 20:
        raise AnswerError(_("Il codice fiscale ha 16 caratteri (11 cifre per le imprese)."))
    try:
        code, _kind = validate_debtor_fiscal_code(text)
    except IdentifierError as exc:
        raise AnswerError(str(exc)) from exc
    return code


def _email(spec: FieldSpec, text: str, today: date) -> str:
    text = text.replace(" ", "").lower()
    if len(text) > EMAIL_MAX or not EMAIL_RE.match(text):
        raise AnswerError(_("Indirizzo e-mail non valido (esempio: nome@dominio.it)."))
    return text


def _plate(spec: FieldSpec, text: str, today: date) -> str:
    plate = re.sub(r"[\s.-]", "", text).upper()
    if not PLATE_RE.match(plate):
        raise AnswerError(_("Targa non valida: lettere e cifre senza spazi (esempio: AB123CD)."))
    return plate


_READERS = {"text": _text, "number": _number, "date": _date, "choice": _choice, "fiscal_code": _fiscal_code,
            "email": _email, "plate": _plate}


def display_value(spec: FieldSpec, value) -> str:
    """An answer as a citizen or an officer reads it (dates gg/mm/aaaa, sì/no)."""
    if value is None or value == "":
        return "—"
    if spec.kind == "checkbox":
        return "sì" if value else "no"
    if spec.kind == "date":
        try:
            return date.fromisoformat(value).strftime("%d/%m/%Y")
        except (TypeError, ValueError):
            return str(value)
    return str(value)
