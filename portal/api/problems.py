"""RFC 9457 ``application/problem+json`` answers of the API, with Italian titles and field-level errors."""

from __future__ import annotations

import json

from flask import Response, request

from portal.api import convert

MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Richiesta non valida",
    401: "Autenticazione richiesta",
    403: "Operazione non consentita",
    404: "Risorsa non trovata",
    405: "Metodo non consentito",
    409: "Conflitto con lo stato della risorsa",
    413: "Richiesta troppo grande",
    415: "Formato non supportato",
    422: "Dati non validi",
    429: "Troppe richieste",
    500: "Errore interno",
}


def problem(status: int, detail: str | None = None, *, errors: list[dict] | None = None, headers: dict | None = None,
            **extra) -> Response:
    body = {"type": "about:blank", "title": TITLES.get(status, "Errore"), "status": status, "detail": detail,
            "instance": request.path, "errors": errors or [], **extra}
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_problem(req, resp, err, instance, model_adapter) -> None:
    """SpecTree's hook: a request that failed validation gets a problem listing every field, in Italian."""
    if err is None or resp is None:
        return
    errors = convert.pydantic_errors(err.errors(include_url=False, include_input=False))
    body = problem(422, "Alcuni campi non sono validi: vedere «errors».", errors=errors)
    resp.set_data(body.get_data())
    resp.mimetype = MEDIA_TYPE
