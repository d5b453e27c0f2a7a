"""What can go wrong talking to pagoPA, as exceptions the rest of Pay Box can act on.

The split that matters to callers is *retry or not*: :class:`PagoPAUnavailable` (network, timeout, 5xx, 429)
will likely succeed later unchanged; :class:`PagoPARejected` (other 4xx) will fail again until our data or
configuration changes. Every exception keeps pagoPA's ``ProblemJson`` ``detail`` verbatim, its ``title`` (for
GPD, as the stable ``AppError`` code, see below) and adds ``message``, an Italian sentence for an officer.

GPD writes the *human* title of its ``AppError`` enum in ``ProblemJson.title`` ("The debt position violated
constraints of uniqueness"), and some titles are shared by two errors. The GPD client turns a recognised one
into the enum name (``DEBT_POSITION_UNIQUE_VIOLATION``), which is what callers compare; ``raw_title`` keeps what
was received.
"""


class PagoPAError(Exception):
    """A pagoPA call failed, or answered something we cannot use.

    :param message: Italian, for people; ``str(exc)`` returns it.
    :param status: the HTTP status (``None`` when no answer arrived).
    :param title: what the error is, for code to compare: GPD's ``AppError`` name when recognised
        (``DEBT_POSITION_UNIQUE_VIOLATION`` ...), FdR's ``appErrorCode`` (``FDR-3001``), else ``ProblemJson.title``.
    :param detail: ``ProblemJson.detail``: pagoPA's own explanation, in English.
    :param request_id: the ``X-Request-Id`` we sent, to quote to pagoPA support.
    :param raw_title: ``ProblemJson.title`` exactly as received (defaults to ``title``).
    """

    default_message = "Errore nella comunicazione con pagoPA."

    def __init__(self, message: str | None = None, *, status: int | None = None, title: str | None = None,
                 detail: str | None = None, request_id: str | None = None, raw_title: str | None = None):
        self.message = message or self.default_message
        self.status = status
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.raw_title = raw_title if raw_title is not None else title
        super().__init__(self.message)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status={self.status!r}, title={self.title!r}, detail={self.detail!r}, "
                f"request_id={self.request_id!r})")


class PagoPAUnavailable(PagoPAError):
    """pagoPA could not be reached or failed on its side (network, timeout, 5xx): retry later."""

    default_message = "pagoPA non è raggiungibile in questo momento: l'operazione sarà ritentata più tardi."


class PagoPARateLimited(PagoPAUnavailable):
    """pagoPA asked us to slow down (429); ``retry_after`` is the wait it asked for, in seconds, if any."""

    default_message = "pagoPA ha ricevuto troppe richieste: l'operazione sarà ritentata più tardi."

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kwargs):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class PagoPARejected(PagoPAError):
    """pagoPA refused the request (4xx): retrying unchanged will fail again."""

    default_message = "pagoPA ha rifiutato la richiesta."


class PagoPANotFound(PagoPARejected):
    """pagoPA does not know the requested resource (404): a receipt, a reporting flow, a position."""

    default_message = "Elemento non trovato su pagoPA."


class DebtPositionNotFound(PagoPANotFound):
    """GPD has no such debt position or payment option (404)."""

    default_message = "La posizione debitoria non è presente su pagoPA."


class DebtPositionConflict(PagoPARejected):
    """GPD refused because of the position's state or a duplicate (409); ``title`` says which."""

    default_message = "L'operazione non è compatibile con lo stato della posizione su pagoPA."
