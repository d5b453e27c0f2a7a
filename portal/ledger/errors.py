"""Validation errors that carry the field they belong to, so forms and import reports can place them."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field (``field`` is a dotted path such as ``installments.2.transfers.1.iban``)."""

    field: str
    message: str


class ValidationFailed(ValueError):
    """Input was rejected; nothing was saved. ``errors`` lists every problem found, not only the first."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors

    def by_field(self) -> dict[str, list[str]]:
        """The messages grouped by field path."""
        grouped: dict[str, list[str]] = {}
        for error in self.errors:
            grouped.setdefault(error.field, []).append(error.message)
        return grouped
