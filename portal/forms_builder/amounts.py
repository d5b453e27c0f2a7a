"""How a form decides the amount to pay: fixed, one of a list, quantity × unit price, or typed within limits.

A rule may also carry a reduction for prompt payment (the traffic fine paid within 5 days of its notification
costs 30% less, art. 202 c.1 Codice della Strada): when the date in a form field is at most ``days`` before today,
the amount is reduced by ``percent`` (rounded to the cent, half up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from portal.i18n import _
from portal.money import AmountError, format_euro, parse_euro

#: Kind → the label officers read in the builder.
KINDS = {
    "fixed": "Importo fisso",
    "choice": "Una voce da un elenco, ciascuna con il suo importo",
    "quantity": "Quantità × prezzo unitario",
    "typed": "Indicato dal cittadino, entro un minimo e un massimo",
}
#: Names of the inputs the citizen form adds for the amount (never valid field keys: they start with ``_``).
TYPED_INPUT = "_importo"
CHOICE_INPUT = "_voce"
MAX_OPTIONS = 20
#: pagoPA's largest amount, and a sane ceiling for anything a citizen types.
MAX_CENTS = 99_999_999_999


@dataclass(frozen=True)
class AmountOption:
    """One entry of a ``choice`` rule: what the citizen reads and what it costs."""

    label: str
    amount_cents: int


@dataclass(frozen=True)
class Reduction:
    """A lower amount when the date in ``date_field`` is at most ``days`` days ago."""

    percent: int
    days: int
    date_field: str


@dataclass(frozen=True)
class AmountRule:
    """The amount rule of a form; which attributes matter depends on ``kind``."""

    kind: str = "fixed"
    #: ``fixed``: the amount; ``quantity``: the unit price.
    amount_cents: int | None = None
    options: tuple[AmountOption, ...] = field(default_factory=tuple)
    #: ``quantity``: the number field holding the quantity.
    quantity_field: str | None = None
    #: ``typed``: the limits.
    min_cents: int | None = None
    max_cents: int | None = None
    reduction: Reduction | None = None

    def to_dict(self) -> dict:
        """A JSON-friendly copy."""
        data: dict = {"kind": self.kind}
        for name in ("amount_cents", "quantity_field", "min_cents", "max_cents"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.options:
            data["options"] = [{"label": o.label, "amount_cents": o.amount_cents} for o in self.options]
        if self.reduction:
            data["reduction"] = {"percent": self.reduction.percent, "days": self.reduction.days,
                                 "date_field": self.reduction.date_field}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AmountRule:
        """The rule stored by :meth:`to_dict`."""
        reduction = data.get("reduction")
        return cls(kind=data.get("kind", "fixed"), amount_cents=data.get("amount_cents"),
                   options=tuple(AmountOption(o["label"], int(o["amount_cents"])) for o in data.get("options") or ()),
                   quantity_field=data.get("quantity_field"), min_cents=data.get("min_cents"),
                   max_cents=data.get("max_cents"),
                   reduction=Reduction(int(reduction["percent"]), int(reduction["days"]), reduction["date_field"])
                   if reduction else None)


@dataclass(frozen=True)
class Amount:
    """What the citizen pays, and how it was reached (shown on the summary)."""

    cents: int
    explanation: str
    #: The label of the chosen entry (``choice`` rules), usable in the subject as ``{voce}``.
    option_label: str | None = None


class AmountInvalid(ValueError):
    """The amount cannot be computed from the answers; ``field`` is the input to correct."""

    def __init__(self, field_key: str, message: str):
        super().__init__(message)
        self.field = field_key
        self.message = message


def compute(rule: AmountRule, answers: dict, raw: dict, *, today: date) -> Amount:
    """The amount due for ``answers`` (the read values) and ``raw`` (the amount inputs as typed).

    :raise AmountInvalid: on the input to correct, with an Italian message.
    """
    option_label = None
    if rule.kind == "fixed":
        cents, explanation = rule.amount_cents, "importo fisso"
    elif rule.kind == "choice":
        choice = (raw.get(CHOICE_INPUT) or "").strip()
        index = int(choice) if choice.isascii() and choice.isdigit() else -1
        if not 0 <= index < len(rule.options):
            raise AmountInvalid(CHOICE_INPUT, _("Scegliere una delle voci."))
        option = rule.options[index]
        cents, explanation, option_label = option.amount_cents, option.label, option.label
    elif rule.kind == "quantity":
        quantity = answers.get(rule.quantity_field)
        if not isinstance(quantity, int) or quantity < 1:
            raise AmountInvalid(rule.quantity_field, _("Indicare una quantità di almeno 1."))
        cents = quantity * rule.amount_cents
        explanation = f"{quantity} × {format_euro(rule.amount_cents)}"
    elif rule.kind == "typed":
        try:
            cents = parse_euro((raw.get(TYPED_INPUT) or "")[:30])
        except AmountError as exc:
            raise AmountInvalid(TYPED_INPUT, str(exc)) from exc
        if rule.min_cents is not None and cents < rule.min_cents:
            raise AmountInvalid(TYPED_INPUT, _("L'importo minimo è %(euro)s.", euro=format_euro(rule.min_cents)))
        if rule.max_cents is not None and cents > rule.max_cents:
            raise AmountInvalid(TYPED_INPUT, _("L'importo massimo è %(euro)s.", euro=format_euro(rule.max_cents)))
        explanation = "importo indicato"
    else:
        raise ValueError(f"unknown amount rule {rule.kind!r}")
    if cents > MAX_CENTS:
        raise AmountInvalid(rule.quantity_field or TYPED_INPUT, _("L'importo supera il massimo consentito."))
    reduced = _reduce(rule.reduction, cents, answers, today)
    if reduced is not None:
        explanation += f", ridotto del {rule.reduction.percent}% (pagamento entro {rule.reduction.days} giorni)"
        cents = reduced
    return Amount(cents, explanation, option_label)


def _reduce(reduction: Reduction | None, cents: int, answers: dict, today: date) -> int | None:
    if reduction is None:
        return None
    when = answers.get(reduction.date_field)
    if not when:
        return None
    elapsed = (today - date.fromisoformat(when)).days
    if not 0 <= elapsed <= reduction.days:
        return None
    # Half up, in integers: cents × (100 − p) / 100.
    return (cents * (100 - reduction.percent) + 50) // 100


def validate_rule(rule: AmountRule, fields_by_key: dict) -> list[tuple[str, str]]:
    """Problems of a rule as an officer defined it: ``(input, message)`` pairs, empty when it is fine."""
    problems: list[tuple[str, str]] = []
    if rule.kind not in KINDS:
        return [("amount_kind", "Scegliere come si calcola l'importo.")]
    if rule.kind in ("fixed", "quantity") and not _positive(rule.amount_cents):
        name = "l'importo" if rule.kind == "fixed" else "il prezzo unitario"
        problems.append(("amount_cents", f"Indicare {name}, maggiore di zero."))
    if rule.kind == "choice":
        if not rule.options:
            problems.append(("amount_options", "Indicare almeno una voce, una per riga: descrizione | importo."))
        if len(rule.options) > MAX_OPTIONS:
            problems.append(("amount_options", f"Al massimo {MAX_OPTIONS} voci."))
        labels = [o.label for o in rule.options]
        if len(set(labels)) != len(labels):
            problems.append(("amount_options", "Due voci hanno la stessa descrizione."))
        if any(not _positive(o.amount_cents) for o in rule.options):
            problems.append(("amount_options", "Ogni voce deve avere un importo maggiore di zero."))
    if rule.kind == "quantity":
        spec = fields_by_key.get(rule.quantity_field or "")
        if spec is None or spec.kind != "number":
            problems.append(("quantity_field", "Scegliere il campo numerico che indica la quantità."))
        elif not spec.required:
            problems.append(("quantity_field", "Il campo della quantità deve essere obbligatorio."))
    if rule.kind == "typed":
        low, high = rule.min_cents, rule.max_cents
        if low is not None and not _positive(low):
            problems.append(("min_cents", "Il minimo deve essere maggiore di zero."))
        if high is None or not _positive(high):
            problems.append(("max_cents", "Indicare l'importo massimo che il cittadino può indicare."))
        elif low is not None and low > high:
            problems.append(("min_cents", "Il minimo supera il massimo."))
    if rule.reduction is not None:
        red = rule.reduction
        spec = fields_by_key.get(red.date_field or "")
        if spec is None or spec.kind != "date" or not spec.required:
            problems.append(("reduction_date_field", "La riduzione richiede un campo data obbligatorio."))
        if not 1 <= red.percent <= 99:
            problems.append(("reduction_percent", "La riduzione è una percentuale tra 1 e 99."))
        if not 0 <= red.days <= 365:
            problems.append(("reduction_days", "I giorni della riduzione vanno da 0 a 365."))
    return problems


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_CENTS
