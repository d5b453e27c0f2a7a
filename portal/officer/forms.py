"""Forms of the back office that are not tied to one area (login)."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


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
