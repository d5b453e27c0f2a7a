"""A position's timeline as officers read it: one Italian sentence per event, its details as labelled fields.

Every event kind, detail and coded value (channels, pagoPA operations, payment methods, flags) has an Italian text
here; nothing raw reaches the page. Plain Python (no Flask), so ``tests/test_timeline.py`` walks every kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from portal.formatting import format_datetime
from portal.ledger.models import Event
from portal.ledger.notice_numbers import format_nav
from portal.ledger.status import PositionStatus
from portal.money import format_euro

#: The sentence of each event kind: status changes first, then the other events.
SENTENCES = {
    PositionStatus.DRAFT.value: "La posizione è tornata in bozza.",
    PositionStatus.PUBLISHED.value: "La posizione è stata caricata su pagoPA ed è pagabile.",
    PositionStatus.PARTIALLY_PAID.value: "La posizione è stata pagata in parte.",
    PositionStatus.PAID.value: "La posizione è stata pagata per intero.",
    PositionStatus.REPORTED.value: "Il pagamento è stato rendicontato da pagoPA.",
    PositionStatus.EXPIRED.value: "La posizione è scaduta.",
    PositionStatus.CANCELLED.value: "La posizione è stata annullata.",
    PositionStatus.REMINDED.value: "Al debitore è stato inviato un sollecito.",
    PositionStatus.IN_LITIGATION.value: "La posizione è passata al contenzioso.",
    "created": "La posizione è stata creata.",
    "publish_requested": "È stata richiesta la pubblicazione su pagoPA.",
    "updated": "La posizione è stata modificata.",
    "abated": "L'importo dovuto è stato ridotto (sgravio).",
    "notice_issued": "L'avviso di pagamento è stato emesso.",
    "installment_paid": "Una rata è stata pagata.",
    "receipt_flagged": "È arrivata una ricevuta di pagamento da verificare.",
    "receipt_resolved": "L'anomalia della ricevuta è stata risolta.",
    "reissued": "La posizione è stata sostituita da un nuovo atto.",
    "reissue_of": "La posizione è l'avviso di accertamento esecutivo che sostituisce una posizione non pagata.",
    "citizen_form": "Il cittadino ha compilato il modulo di pagamento del servizio.",
    "sync_failed": "pagoPA non ha accettato la modifica.",
    "pagopa_updated": "La nuova versione è stata inviata a pagoPA.",
    "pagopa_invalidated": "La posizione è stata annullata su pagoPA.",
    "pagopa_deleted": "La posizione è stata eliminata da pagoPA.",
    "option_reported": "Il pagamento di un avviso è stato rendicontato da pagoPA.",
    "report_flagged": "La rendicontazione di pagoPA non corrisponde a quanto registrato: da verificare.",
    "report_withdrawn": "Una nuova revisione del flusso di rendicontazione non riporta più un pagamento.",
    "report_resolved": "L'anomalia di rendicontazione è stata risolta.",
    "offline_payment_flagged": "È stato registrato un pagamento fuori pagoPA di importo diverso dal dovuto: da "
                               "verificare.",
    "offline_payment_reversed": "Un pagamento fuori pagoPA registrato per errore è stato annullato.",
    "offline_payment_resolved": "L'anomalia del pagamento fuori pagoPA è stata risolta.",
    "pagopa_paid_marked": "pagoPA è stato informato del pagamento fuori pagoPA: l'avviso non è più pagabile.",
}

#: How the details of an event are named.
DETAIL_LABELS = {
    "previous": "Stato precedente",
    "form": "Modulo",
    "form_version": "Versione del modulo",
    "reason": "Motivo",
    "note": "Nota",
    "source": "Canale",
    "external_id": "Identificativo esterno",
    "amount_cents": "Importo",
    "option_amount_cents": "Importo dell'avviso",
    "notice_numbers": "Codici avviso",
    "notice_number": "Codice avviso",
    "iuv": "IUV",
    "psp": "PSP",
    "psp_id": "Codice PSP",
    "psp_name": "PSP",
    "receipt_id": "Ricevuta",
    "payment_method": "Metodo di pagamento",
    "payment_at": "Pagato il",
    "fee_cents": "Commissione",
    "stand_in": "Pagamento in stand-in",
    "channel": "Canale",
    "option_kind": "Opzione",
    "installment_number": "Rata",
    "flag": "Da verificare",
    "position_status": "Stato della posizione",
    "message": "Messaggio",
    "title": "Errore pagoPA",
    "detail": "Dettaglio tecnico (pagoPA)",
    "status": "Codice HTTP",
    "action": "Operazione",
    "how": "Esito",
    "version": "Versione",
    "flow_id": "Flusso di rendicontazione",
    "revision": "Revisione del flusso",
    "regulation": "Identificativo del bonifico (regolamento)",
    "regulation_date": "Data del regolamento",
    "iuvs": "IUV rendicontati",
    "anomaly": "Anomalia",
    "expected_cents": "Importo atteso",
    "bill_run_id": "Bollettazione n.",
    "mode": "File di stampa",
    "request_id": "Identificativo della richiesta",
    "selection": "Insieme ad altre bozze selezionate",
    "owed_before_cents": "Dovuto prima",
    "owed_after_cents": "Dovuto dopo",
    "notice_superseded": "Avviso stampato superato (da ristampare)",
    "deadline": "Termine per pagare",
    "due_date": "Scadenza",
    "grace_days": "Giorni di tolleranza",
    "cost_cents": "Spese addebitate",
    "sequence": "Sollecito n.",
    "batch_id": "Lotto n.",
    "reminder_id": "Sollecito (identificativo)",
    "new_position_id": "Nuova posizione n.",
    "new_iupd": "Identificativo della nuova posizione",
    "old_position_id": "Posizione sostituita n.",
    "old_iupd": "Identificativo della posizione sostituita",
    "breakdown": "Composizione dell'importo",
    "pagopa": "pagoPA",
    "payment_channel": "Canale di pagamento",
    "reference": "Riferimento del pagamento",
    "payment_date": "Data del pagamento",
    "offline_payment_id": "Pagamento fuori pagoPA n.",
}

#: How the fields of a change (``changes`` of ``updated`` and ``abated`` events) are named.
CHANGE_FIELDS = {
    "subject": "Causale",
    "owed_cents": "Importo dovuto",
    "amount_cents": "importo",
    "due_date": "scadenza",
    "description": "descrizione",
    "fiscal_code": "codice fiscale",
    "name": "nome",
    "street": "indirizzo",
    "civic_number": "numero civico",
    "postal_code": "CAP",
    "city": "comune",
    "province": "provincia",
    "country": "nazione",
    "email": "e-mail",
    "pec": "PEC",
    "phone": "telefono",
    "iban": "IBAN",
    "taxonomy_code": "codice tassonomico",
    "remittance": "causale del versamento",
    "beneficiary_fiscal_code": "codice fiscale del beneficiario",
    "beneficiary_name": "beneficiario",
}

#: Coded values, per detail, in Italian.
VALUES = {
    "source": {"manual": "inserimento manuale", "api": "servizio web (API)", "import": "importazione da file",
               "demo": "dati dimostrativi", "paSendRT": "ricevuta dal nodo pagoPA", "paSendRTV2": "ricevuta dal nodo "
               "pagoPA", "receipts-api": "recupero ricevute da pagoPA"},
    "channel": {"gpd": "pagoPA (posizioni debitorie)", "manual": "inserimento manuale", "email": "e-mail",
                "pec": "PEC", "print": "posta (pacchetto di stampa)", "raccomandata_ar": "raccomandata A/R",
                "raccomandata": "raccomandata semplice", "messo": "messo notificatore",
                "estero": "notifica all'estero"},
    "action": {"create": "caricamento", "update": "aggiornamento", "invalidate": "annullamento",
               "delete": "eliminazione", "mark_paid": "segnalazione del pagamento"},
    "how": {"invalidated": "annullata", "already_invalid": "era già annullata",
            "deleted": "eliminata (era in bozza o scaduta su pagoPA)", "absent": "non era mai arrivata su pagoPA"},
    "option_kind": {"single": "unica soluzione", "installment": "rata"},
    "payment_channel": {"pagopa": "pagoPA", "cash": "contanti allo sportello", "bank_transfer": "bonifico bancario",
                        "f24": "modello F24"},
    "flag": {"unknown_iuv": "avviso sconosciuto o di un altro ente", "amount_mismatch": "importo diverso dal dovuto",
             "already_paid": "avviso già pagato", "cancelled_position": "posizione o rata annullata"},
    "reason": {"receipt": "è arrivata una ricevuta di pagamento",
               "due_date_changed": "la scadenza è stata spostata in avanti",
               "abated": "il residuo è stato sgravato"},
    "pagopa": {"not_updatable": "pagoPA non consente di modificare una posizione già pagata in parte: le rate "
                                "restano pagabili per l'importo precedente, un pagamento in eccesso va rimborsato"},
    # GPD's error codes (the client maps its English titles back to them).
    "title": {
        "DEBT_POSITION_CREATION_FAILED": "caricamento non riuscito",
        "DEBT_POSITION_INVALIDATE_FAILED": "annullamento non riuscito",
        "DEBT_POSITION_NOT_FOUND": "posizione non presente su pagoPA",
        "DEBT_POSITION_NOT_INVALIDABLE": "la posizione non può essere annullata nel suo stato su pagoPA",
        "DEBT_POSITION_NOT_PUBLISHABLE": "la posizione non può essere pubblicata nel suo stato su pagoPA",
        "DEBT_POSITION_NOT_RECOVERABLE": "posizione non recuperabile",
        "DEBT_POSITION_NOT_UPDATABLE": "la posizione non può più essere modificata su pagoPA",
        "DEBT_POSITION_PAYMENT_FOUND": "su pagoPA risulta già un pagamento",
        "DEBT_POSITION_PUBLISH_DUE_DATE_MISMATCH": "una scadenza è già passata",
        "DEBT_POSITION_PUBLISH_FAILED": "pubblicazione non riuscita",
        "DEBT_POSITION_PUBLISH_VALIDITY_DATE_MISMATCH": "la data di validità non è coerente con le scadenze",
        "DEBT_POSITION_REQUEST_DATA_ERROR": "dati non accettati da pagoPA",
        "DEBT_POSITION_UNIQUE_VIOLATION": "identificativo, IUV o codice avviso già presente su pagoPA",
        "DEBT_POSITION_UPDATE_FAILED": "aggiornamento non riuscito",
        "DEBT_POSITION_UPDATE_FAILED_NO_TRANSFER_FOR_NOTIFICATION_FEE": "manca il versamento per le spese di notifica",
        "PAYMENT_OPTION_ALREADY_PAID": "l'avviso risulta già pagato su pagoPA",
        "PAYMENT_OPTION_NOT_FOUND": "avviso non presente su pagoPA",
        "PAYMENT_OPTION_NOT_PAYABLE": "l'avviso non è pagabile su pagoPA",
        "PAYMENT_OPTION_PAY_FAILED": "segnalazione del pagamento non riuscita",
        "TIMEOUT": "pagoPA non ha risposto in tempo",
        "CONNECTION_ERROR": "pagoPA non raggiungibile",
    },
    "anomaly": {"unknown_payment": "pagamento rendicontato senza ricevuta",
                "amount_mismatch": "importo rendicontato diverso",
                "already_reported": "pagamento rendicontato due volte",
                "flow_totals": "totali del flusso incoerenti", "flow_rejected": "flusso illeggibile",
                "not_reported": "ricevuta non ancora rendicontata",
                "report_withdrawn": "rendicontazione ritirata da una revisione"},
    "mode": {"merged": "un PDF per blocco", "envelopes": "un PDF per busta"},
    # ctReceipt's paymentMethod, as the node sends it.
    "payment_method": {"CP": "carta di pagamento", "BBT": "bonifico bancario", "BP": "bollettino postale",
                       "AD": "addebito diretto", "PO": "pagamento presso un PSP", "MYBK": "MyBank",
                       "PPAL": "PayPal", "BPAY": "Bancomat Pay", "JIF": "Bancomat Pay", "APPL": "Apple Pay",
                       "GOOG": "Google Pay", "SATY": "Satispay", "OBEP": "home banking", "RBPS": "home banking",
                       "other": "altro metodo"},
}

ACTOR_LABELS = {"pagopa": "pagoPA", "system": "Sistema", "test": "Prova", "bollettazione": "Bollettazione",
                "demo": "Dati dimostrativi", "citizen": "Cittadino (portale dei pagamenti)"}


@dataclass
class TimelineEntry:
    """One event as the position page shows it."""

    label: str
    at: datetime
    actor: str
    details: list[tuple[str, str]]


def sentence(kind: str) -> str:
    """The Italian sentence of an event kind (a generic one for a kind not known yet)."""
    return SENTENCES.get(kind, "Evento registrato.")


def status_name(value: str) -> str:
    from portal.ledger.status import LABELS

    try:
        return LABELS[PositionStatus(value)]
    except ValueError:
        return str(value)


def detail_value(key: str, value) -> str:
    """One detail's value in Italian: amounts, dates, notice numbers, statuses and coded values."""
    if key in ("previous", "position_status"):
        return status_name(value)
    if key == "source" and isinstance(value, str) and value.startswith("api:"):
        return f"servizio web (API) del sistema «{value[4:]}»"
    if key in VALUES and isinstance(value, str):
        return VALUES[key].get(value, value if key != "payment_method" else f"{VALUES[key]['other']} ({value})")
    if key.endswith("_cents") and isinstance(value, int):
        return format_euro(value)
    if key.endswith("_date") and isinstance(value, str):
        try:
            return date.fromisoformat(value).strftime("%d/%m/%Y")
        except ValueError:
            return value
    if key.endswith("_at") and isinstance(value, str):
        try:
            return format_datetime(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, bool):
        return "sì" if value else "no"
    if key.startswith("notice_number") and isinstance(value, list):
        return ", ".join(format_nav(str(v)) for v in value)
    if key.startswith("notice_number") and isinstance(value, str):
        return format_nav(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def actor_name(event: Event, user_names: Mapping[int, str]) -> str:
    """Who did it: a user's full name when known, an external system, or pagoPA / the system."""
    if event.actor_user_id is not None and event.actor_user_id in user_names:
        return user_names[event.actor_user_id]
    if event.actor.startswith("api:"):
        return f"Sistema esterno ({event.actor[4:]})"
    if event.actor.startswith("user:"):
        return "Utente non più presente"
    return ACTOR_LABELS.get(event.actor, event.actor)


def change_label(path: str) -> str:
    """``installments.2.transfers.1.iban`` → "Rata 2, beneficiario 1: IBAN"."""
    parts = path.split(".")
    where: list[str] = []
    if parts[0] == "single":
        where.append("Unica soluzione")
        parts = parts[1:]
    elif parts[0] == "installments" and len(parts) > 1:
        where.append(f"Rata {parts[1]}")
        parts = parts[2:]
    elif parts[0] == "debtor":
        where.append("Debitore")
        parts = parts[1:]
    if parts[:1] == ["transfers"] and len(parts) > 1:
        where.append(f"beneficiario {parts[1]}")
        parts = parts[2:]
    name = CHANGE_FIELDS.get(parts[0], parts[0]) if parts else ""
    if not where:
        return name[:1].upper() + name[1:]
    return ", ".join(where) + (f": {name}" if name else "")


def change_value(path: str, value) -> str:
    """A value before or after a change, as the officer reads it."""
    if value is None:
        return "—"
    if isinstance(value, dict):  # an option added or removed: its amount and due date
        return f"{change_value('amount_cents', value.get('amount_cents'))} " \
               f"con scadenza {change_value('due_date', value.get('due_date'))}"
    if path.endswith("amount_cents") or path == "owed_cents":
        return format_euro(value) if isinstance(value, int) else str(value)
    if path.endswith("due_date") and isinstance(value, str):
        try:
            return date.fromisoformat(value).strftime("%d/%m/%Y")
        except ValueError:
            return value
    return str(value)


def _detail_pairs(key: str, value) -> list[tuple[str, str]]:
    if key == "breakdown" and isinstance(value, list):  # a re-issue's amounts, line by line
        return [(str(line.get("label")), f"{format_euro(line.get('cents'))} ({line.get('explanation')})"
                 if line.get("explanation") else format_euro(line.get("cents"))) for line in value]
    if key in ("deadline", "due_date") and isinstance(value, str):
        try:
            return [(DETAIL_LABELS[key], date.fromisoformat(value).strftime("%d/%m/%Y"))]
        except ValueError:
            pass
    if key == "changes" and isinstance(value, list):
        return [(change_label(path), f"{change_value(path, before)} → {change_value(path, after)}")
                for path, before, after in value]
    return [(DETAIL_LABELS.get(key, key.replace("_", " ").capitalize()), detail_value(key, value))]


def describe_event(event: Event, user_names: Mapping[int, str]) -> TimelineEntry:
    """The sentence, its actor and the labelled details of one event."""
    details = [
        pair
        for key, value in (event.details or {}).items()
        if value not in (None, "", [], {}) and not (key == "stand_in" and value is False)
        for pair in _detail_pairs(key, value)
    ]
    return TimelineEntry(label=sentence(event.kind), at=event.at, actor=actor_name(event, user_names),
                         details=details)
