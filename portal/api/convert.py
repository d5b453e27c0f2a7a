"""Between the API's JSON and the ledger: request bodies to :class:`PositionInput`, positions to JSON, and every
error to a field path of the body (``installments[1].due_date``) with the Italian message the form shows."""

from __future__ import annotations

import re

from portal.api import schemas
from portal.ledger.errors import FieldError
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, TransferInput
from portal.ledger.models import Position


def position_input(body: schemas.PositionContent, *, service_id: int, source: str,
                   external_id: str | None = None) -> PositionInput:
    def option(o: schemas.OptionIn) -> OptionInput:
        return OptionInput(amount_cents=o.amount_cents, due_date=o.due_date, description=o.description,
                           transfers=[TransferInput(**t.model_dump()) for t in o.transfers])

    debtor = body.debtor.model_dump()
    debtor["country"] = debtor.get("country") or "IT"
    return PositionInput(
        service_id=service_id,
        debtor=DebtorInput(**debtor),
        subject=body.subject,
        single=option(body.single) if body.single else None,
        installments=[option(o) for o in body.installments],
        external_id=external_id,
        source=source,
    )


def position_json(position: Position) -> dict:
    debtor = position.debtor
    return {
        "id": position.id,
        "iupd": position.iupd,
        "service": position.service.code,
        "source": position.source,
        "external_id": position.external_id,
        "subject": position.subject,
        "status": position.status.value,
        "amount_cents": position.amount_cents,
        "paid_cents": position.paid_cents,
        "due_date": position.due_date.isoformat(),
        **{name: _iso(getattr(position, name)) for name in (
            "created_at", "updated_at", "published_at", "paid_at", "cancelled_at", "notice_issued_at",
            "notice_superseded_at")},
        "replaces_id": position.replaces_id,
        "debtor": {name: getattr(debtor, name) for name in schemas.DebtorOut.model_fields},
        "options": [
            {
                "kind": o.kind, "installment_number": o.installment_number, "iuv": o.iuv,
                "notice_number": o.notice_number, "amount_cents": o.amount_cents, "due_date": o.due_date.isoformat(),
                "description": o.description, "status": o.status.value, "paid_at": _iso(o.paid_at),
                "transfers": [{name: getattr(t, name) for name in schemas.TransferOut.model_fields}
                              for t in o.transfers],
            }
            for o in sorted(position.options, key=lambda o: (o.kind != "single", o.installment_number or 0))
        ],
        "pagopa": {
            "target": position.pagopa_target, "version": position.pagopa_version,
            "confirmed_target": position.pagopa_synced_target, "confirmed_version": position.pagopa_synced_version,
            "pending": bool(position.sync_pending), "error": position.sync_error,
        },
    }


def _iso(value):
    return value.isoformat() if value is not None else None


# --- Errors ----------------------------------------------------------------------------------------------------------

#: The ledger's names of fields that the API calls otherwise.
_LEDGER_NAMES = {"amount": "amount_cents", "service_id": "service", "options": "single"}


def ledger_path(path: str) -> str:
    """``installments.2.transfers.1.amount`` (the ledger's, 1-based) → ``installments[1].transfers[0].amount_cents``."""
    parts = path.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part in ("installments", "transfers") and i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append(f"{part}[{int(parts[i + 1]) - 1}]")
            i += 2
            continue
        out.append(_LEDGER_NAMES.get(part, part))
        i += 1
    return ".".join(out)


def ledger_errors(errors: list[FieldError]) -> list[dict]:
    return [{"field": ledger_path(e.field), "message": e.message} for e in errors]


def pydantic_path(loc: tuple) -> str:
    """``('installments', 1, 'due_date')`` → ``installments[1].due_date``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "body"


def pydantic_message(error: dict) -> str:
    """Pydantic's error, in Italian."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return "Campo obbligatorio."
    if kind == "extra_forbidden":
        return "Campo non previsto: controllare il nome."
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "Deve essere un numero intero (gli importi sono in centesimi)."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "Valore fuori dai limiti ammessi."
    if kind.startswith("string_too_long"):
        return f"Al massimo {ctx.get('max_length')} caratteri."
    if kind.startswith("string_too_short"):
        return "Il testo non può essere vuoto."
    if kind.startswith("string"):
        return "Deve essere un testo."
    if kind.startswith("date") or kind.startswith("datetime"):
        return "Data non valida: usare il formato AAAA-MM-GG."
    if kind == "too_long":
        return f"Al massimo {ctx.get('max_length')} elementi."
    if kind in ("list_type", "model_type", "dict_type", "model_attributes_type"):
        return "Tipo non valido: è atteso un oggetto o un elenco come descritto nel documento OpenAPI."
    if kind in ("literal_error", "enum"):
        return f"Valore non ammesso: {ctx.get('expected', '')}".rstrip(": ") + "."
    if kind.startswith("bool"):
        return "Deve essere true o false."
    return "Valore non valido."


def pydantic_errors(errors: list[dict]) -> list[dict]:
    found = []
    for error in errors:
        loc = tuple(error.get("loc") or ())
        # Unions (``X | None``) add the branch name to the path: drop it.
        loc = tuple(p for p in loc if not (isinstance(p, str) and re.fullmatch(r"(function-.*|constrained-.*)", p)))
        found.append({"field": pydantic_path(loc), "message": pydantic_message(error)})
    return found


def differences(body: dict, stored: dict, prefix: str = "") -> list[str]:
    """The field paths where a repeated create's body differs from the position stored for its external id."""
    diffs: list[str] = []
    for key in sorted(body.keys() | stored.keys()):
        path = f"{prefix}.{key}" if prefix else key
        a, b = body.get(key), stored.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += differences(a, b, path)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for n, (x, y) in enumerate(zip(a, b, strict=True)):
                if isinstance(x, dict) and isinstance(y, dict):
                    diffs += differences(x, y, f"{path}[{n}]")
                elif x != y:
                    diffs.append(f"{path}[{n}]")
        elif a != b:
            diffs.append(path)
    return diffs
