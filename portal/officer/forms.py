"""Forms of the back office that are not tied to one area (login, one-button actions, the position page's)."""

from flask import flash
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


def flash_errors(form: FlaskForm) -> None:
    """Show every error of a small form of the position page as a message (the page is shown again after a
    redirect, the form folded)."""
    for messages in form.errors.values():
        for message in messages:
            flash(message, "error")


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Nome utente", validators=[DataRequired("Indicare il nome utente."), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired("Indicare la password.")])


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for one-button actions (logout, publish, ...)."""


class CancelPositionForm(FlaskForm):
    """Why a credit is cancelled (kept on the timeline)."""

    reason = TextAreaField("Motivo dell'annullamento",
                           validators=[DataRequired("Indicare il motivo dell'annullamento."), Length(max=500)])


class ResolveAnomalyForm(FlaskForm):
    """What was done about a receipt that could not pay an open option (kept with the receipt)."""

    note = TextAreaField("Come è stata risolta",
                         validators=[DataRequired("Indicare come è stata risolta l'anomalia."), Length(max=1000)])


class AbatePositionForm(FlaskForm):
    """An abatement (sgravio): how much of what is owed is no longer due, and why (kept on the timeline)."""

    amount = StringField("Importo da sgravare", validators=[DataRequired("Indicare l'importo da sgravare.")])
    reason = TextAreaField("Motivo dello sgravio",
                           validators=[DataRequired("Indicare il motivo dello sgravio."), Length(max=500)])


class OfflinePaymentForm(FlaskForm):
    """A payment made outside pagoPA, as the officer copies it from the till receipt, the bank statement or the F24.

    Only the CSRF token is checked here: the ledger's rules (:mod:`portal.ledger.offline_payments`) check the
    rest and the view puts each message on its field.
    """

    option = SelectField(_l("Rata o unica soluzione pagata"), validate_choice=False)
    paid_on = StringField(_l("Data del pagamento"))
    channel = SelectField(_l("Canale"), validate_choice=False)
    reference = StringField(_l("Riferimento del pagamento"))
    amount = StringField(_l("Importo pagato"))
    accept_amount_mismatch = BooleanField(_l("Confermo l'importo anche se diverso dal dovuto"))


class ReversePaymentForm(FlaskForm):
    """Why a payment recorded outside pagoPA is cancelled (kept on the timeline)."""

    reason = TextAreaField(_l("Motivo dell'annullamento del pagamento"),
                           validators=[DataRequired(_l("Indicare il motivo dell'annullamento del pagamento.")),
                                       Length(max=500)])
