"""What SpecTree's generated document cannot say by itself: problems are ``application/problem+json``, the notice is
a PDF, the accounting export CSV or XLSX, and which calls take an ``Idempotency-Key``. Applied to the generated
document, never written by hand."""

from __future__ import annotations

import copy

from portal.reports.exports import XLSX_MIMETYPE

PROBLEM_REF = "#/components/schemas/Problem"
#: Calls that honour an ``Idempotency-Key`` header.
IDEMPOTENT = ("/positions/{position_id}/cancel", "/abatement", "/confirm", "/cancel-positions", "/offline-payments",
              "/reverse")
#: The upload's body, which SpecTree cannot describe (a file).
UPLOAD_PATH = "/api/v1/imports"
UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "service"],
        "properties": {
            "file": {"type": "string", "contentMediaType": "application/octet-stream",
                     "description": "Il file CSV o XLSX (tracciato nel README; modello dal back office)."},
            "service": {"type": "string", "maxLength": 20, "description": "Codice del servizio."},
            "valid_rows_only": {"type": "boolean", "description": "Importa solo le righe valide."},
            "update_existing": {"type": "boolean", "description": "Aggiorna le posizioni già presenti."},
        }}}},
}
PDF_SUFFIX = "/notice.pdf"
CSV_SUFFIX = "/errors.csv"
#: The accounting export: CSV or XLSX, as asked by ``format``.
EXPORT_PATH = "/api/v1/payments/export"


#: Path parameters of our own converters (``<id32:...>``), which SpecTree does not know: their schema.
ID32_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def document(generated: dict) -> dict:
    doc = copy.deepcopy(generated)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and not parameter.get("schema"):
                    parameter["schema"] = dict(ID32_SCHEMA)
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                json_body = content.get("application/json")
                if json_body and json_body.get("schema", {}).get("$ref") == PROBLEM_REF:
                    response["content"] = {"application/problem+json": json_body}
                if path.endswith(PDF_SUFFIX) and code == "200":
                    response["content"] = {"application/pdf": {"schema": {"type": "string",
                                                                          "contentMediaType": "application/pdf"}}}
                if path.endswith(CSV_SUFFIX) and code == "200":
                    response["content"] = {"text/csv": {"schema": {"type": "string"}}}
                if path == EXPORT_PATH and code == "200":
                    response["content"] = {"text/csv": {"schema": {"type": "string"}},
                                           XLSX_MIMETYPE: {"schema": {"type": "string",
                                                                      "contentMediaType": XLSX_MIMETYPE}}}
            if method == "post" and path == UPLOAD_PATH:
                operation["requestBody"] = copy.deepcopy(UPLOAD_BODY)
            if method == "post" and path.endswith(IDEMPOTENT):
                operation.setdefault("parameters", []).append({
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "Una chiave scelta dal chiamante: ripetere la richiesta con la stessa chiave "
                                   "restituisce la prima risposta senza rifare l'operazione (conservata 7 giorni).",
                    "schema": {"type": "string", "maxLength": 255},
                })
    return doc
