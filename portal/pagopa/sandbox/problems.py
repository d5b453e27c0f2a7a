"""Error bodies as pagoPA's services write them.

GPD answers ``ProblemJson {title, status, detail}`` with the *titles of its AppError enum* (upstream
``pagopa-debt-position`` ``exception/AppError.java``): e.g. a duplicate is 409 with title "The debt position
violated constraints of uniqueness", not the enum name. Schema violations are 400 "BAD REQUEST"
(``ErrorHandler.java``). :data:`GPD_ERRORS` maps the enum names (used in the digest) to status and title.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import jsonify


@dataclass(frozen=True)
class AppError:
    status: int
    title: str
    detail: str


GPD_ERRORS: dict[str, AppError] = {
    "DEBT_POSITION_REQUEST_DATA_ERROR": AppError(400, "Error in the debt position request data", "{}"),
    "DEBT_POSITION_UNIQUE_VIOLATION": AppError(
        409, "The debt position violated constraints of uniqueness",
        "Already exists a debt position for the Organization Fiscal Code {} or one of its payment options is not "
        "unique"),
    "DEBT_POSITION_NOT_FOUND": AppError(
        404, "Not found the debt position",
        "Not found a debt position for Organization Fiscal Code {} and IUPD {}"),
    "DEBT_POSITION_PAYMENT_FOUND": AppError(
        409, "Existing related payment found",
        "A payment transaction has already been carried out on the debt position with Organization Fiscal Code {} "
        "and IUPD {}"),
    "DEBT_POSITION_NOT_UPDATABLE": AppError(
        409, "Existing related payment found or not in updatable state",
        "A payment transaction has already been carried out or, the debt position with Organization Fiscal Code {} "
        "and IUPD {}, is not in updatable state"),
    "DEBT_POSITION_NOT_PUBLISHABLE": AppError(
        409, "Existing related payment found or not in publishable state",
        "A payment transaction has already been carried out or, the debt position with Organization Fiscal Code {} "
        "and IUPD {}, is not in publishable state"),
    "DEBT_POSITION_PUBLISH_VALIDITY_DATE_MISMATCH": AppError(
        409, "Publish request occurred after the validity date began",
        "A publish request has been made after the validity date began for the debt position with Organization "
        "Fiscal Code {} and IUPD {}"),
    "DEBT_POSITION_PUBLISH_DUE_DATE_MISMATCH": AppError(
        409, "Publish request occurred after the due date of a payment options has expired",
        "A publish request occurred after the due date of a payment options has expired for the debt position with "
        "Organization Fiscal Code {} and IUPD {}"),
    "DEBT_POSITION_NOT_INVALIDABLE": AppError(
        409, "Existing related payment found or not in invalidable state",
        "A payment transaction has already been carried out or, the debt position with Organization Fiscal Code {} "
        "and IUPD {}, is not in invalidable state"),
    "PAYMENT_OPTION_NOT_FOUND": AppError(
        404, "Not found the payment option", "Not found a payment option for Organization Fiscal Code {} and IUV {}"),
    "PAYMENT_OPTION_NOT_PAYABLE": AppError(
        422, "Not in payable state",
        "The payment option with Organization Fiscal Code {} and IUV {} is not in payable state"),
    "PAYMENT_OPTION_ALREADY_PAID": AppError(
        409, "Existing related payment found",
        "A payment transaction has already been carried out for the Organization Fiscal Code {} and IUV {}"),
}

BAD_REQUEST = "BAD REQUEST"


class ApiError(Exception):
    """Raised by handlers; rendered as a ProblemJson (or the FdR error shape) by the app."""

    def __init__(self, status: int, title: str, detail: str, *, app_code: str | None = None,
                 headers: dict | None = None):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.app_code = app_code
        self.headers = headers or {}


def gpd_error(name: str, *args) -> ApiError:
    error = GPD_ERRORS[name]
    return ApiError(error.status, error.title, error.detail.format(*args))


def data_error(detail: str) -> ApiError:
    return gpd_error("DEBT_POSITION_REQUEST_DATA_ERROR", detail)


_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")


def problem_response(error: ApiError, api: str | None = None):
    body = {"title": error.title, "status": error.status, "detail": error.detail}
    if api == "fdr":
        # The FdR service answers its own ErrorResponse shape; we send both sets of members.
        body.update({
            "httpStatusCode": error.status,
            "httpStatusDescription": reason(error.status),
            "appErrorCode": error.app_code or ("FDR-1000" if error.status == 400 else "FDR-0500"),
            "errors": [{"message": error.detail}],
        })
    response = jsonify(body)
    response.status_code = error.status
    for key, value in error.headers.items():
        response.headers[key] = value
    return response
