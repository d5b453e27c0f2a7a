"""Forms of the settings area (admins only): the Ente, its accounts, its services and its users.

The forms check what a browser can get wrong (required fields, types, choices); the rules of the domain (fiscal
code, segregation code, IBAN, taxonomy, unique codes) live in the service functions, whose errors the views put
back on these fields.
"""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional, Regexp, ValidationError

from portal.accounts.models import ROLE_LABELS, Role
from portal.accounts.services import MIN_PASSWORD_LENGTH
from portal.collections import settings as collection_settings
from portal.collections.history import as_text
from portal.formatting import parse_date_input
from portal.ledger import notice_numbers, taxonomy
from portal.ledger.identifiers import IdentifierError, validate_creditor_fiscal_code, validate_iban
from portal.money import AmountError, format_euro, parse_euro
from portal.notices.logo import MAX_BYTES as LOGO_MAX_BYTES


def domain_check(check, *errors: type[Exception]):
    """A WTForms validator running one of the domain's pure checks, so its Italian message shows on the field
    together with the form's other errors (the service function checks again before saving)."""

    def validator(form, field):
        if not field.data:
            return
        try:
            check(field.data)
        except errors as exc:
            raise ValidationError(str(exc)) from exc

    return validator


class DaysField(IntegerField):
    """A whole number of days, with an Italian message when it is not one."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("Indicare un numero intero di giorni.")) from exc


class CreditorForm(FlaskForm):
    """The Ente's data, as printed on notices and sent to pagoPA."""

    name = StringField(_l("Denominazione dell'ente"), validators=[DataRequired(_l("Indicare la denominazione."))])
    department = StringField(_l("Settore o ufficio"))
    fiscal_code = StringField(_l("Codice fiscale dell'ente"), validators=[
        DataRequired(_l("Indicare il codice fiscale dell'ente.")),
        domain_check(validate_creditor_fiscal_code, IdentifierError),
    ])
    segregation_code = StringField(_l("Codice di segregazione"), validators=[
        DataRequired(_l("Indicare il codice di segregazione.")),
        domain_check(notice_numbers.validate_segregation_code, notice_numbers.NoticeNumberError),
    ])
    cbill_code = StringField(_l("Codice CBILL"))
    postal_account = StringField(_l("Conto corrente postale"))
    postal_authorization = StringField(_l("Autorizzazione Poste Italiane"))
    broker_id = StringField(_l("Codice intermediario pagoPA"))
    station_id = StringField(_l("Codice stazione pagoPA"))
    address = StringField(_l("Indirizzo"))
    city = StringField(_l("Comune"))
    province = StringField(_l("Provincia (sigla)"))
    postal_code = StringField(_l("CAP"))
    email = StringField(_l("E-mail"))
    pec = StringField(_l("PEC"))
    phone = StringField(_l("Telefono"))
    website = StringField(_l("Sito web"))
    bilingual_notices = BooleanField(_l("Avvisi bilingue (italiano e tedesco)"))


def upload_size(max_bytes: int, message):
    """Refuse an uploaded file over ``max_bytes`` by its size on the stream, without reading it into memory."""

    def validator(form, field):
        stream = getattr(field.data, "stream", None)
        if stream is None:
            return
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
        if size > max_bytes:
            raise ValidationError(message)

    return validator


class LogoForm(FlaskForm):
    """The logo printed on the notices (what the image must be is checked by :func:`portal.notices.logo.prepare_logo`,
    through :func:`portal.settings.services.set_logo`)."""

    logo = FileField(_l("File del logo"), validators=[
        FileRequired(_l("Scegliere il file del logo.")),
        upload_size(LOGO_MAX_BYTES, _l("Il file del logo supera 1 MB.")),
    ])


class AccountForm(FlaskForm):
    """A new IBAN registered on pagoPA."""

    iban = StringField(_l("IBAN"), validators=[DataRequired(_l("Indicare l'IBAN.")),
                                               domain_check(validate_iban, IdentifierError)])
    label = StringField(_l("Descrizione"), validators=[DataRequired(_l("Indicare una descrizione del conto."))])
    is_postal = BooleanField(_l("Conto postale (IBAN di Poste Italiane)"))


class AccountEditForm(FlaskForm):
    """What may change on an account: never the IBAN itself."""

    label = StringField(_l("Descrizione"), validators=[DataRequired(_l("Indicare una descrizione del conto."))])
    is_postal = BooleanField(_l("Conto postale (IBAN di Poste Italiane)"))


class ServiceForm(FlaskForm):
    """A service and its defaults; ``account_id`` choices are the creditor's accounts (set by the view)."""

    code = StringField(_l("Codice"), validators=[
        DataRequired(_l("Indicare il codice del servizio.")),
        Regexp(r"^[A-Za-z0-9_-]{1,35}$",
               message=_l("Il codice ammette solo lettere, cifre, '_' e '-' (massimo 35 caratteri).")),
    ])
    name = StringField(_l("Nome"), validators=[DataRequired(_l("Indicare il nome del servizio."))])
    description = TextAreaField(_l("Descrizione"))
    taxonomy_code = StringField(_l("Codice tassonomico pagoPA"), validators=[
        DataRequired(_l("Indicare il codice tassonomico.")),
        domain_check(taxonomy.validate, taxonomy.TaxonomyError),
    ])
    account_id = SelectField(_l("Conto di accredito"), coerce=int,
                             validators=[InputRequired(_l("Scegliere il conto di accredito."))])
    office = StringField(_l("Ufficio responsabile"))
    default_due_days = DaysField(_l("Giorni alla scadenza (predefinito)"), default=30,
                                    validators=[InputRequired(_l("Indicare il numero di giorni."))])
    draft_first = BooleanField(_l("Le nuove posizioni restano in bozza"))
    spontaneous = BooleanField(_l("Pagamento spontaneo dal portale del cittadino"))
    active = BooleanField(_l("Attivo"), default=True)


def role_choices() -> list[tuple[str, str]]:
    return [(role.value, ROLE_LABELS[role]) for role in Role]


class _UserFields(FlaskForm):
    full_name = StringField(_l("Nome e cognome"), validators=[DataRequired(_l("Indicare nome e cognome.")),
                                                            Length(max=140)])
    email = StringField(_l("E-mail"), validators=[
        Optional(), Length(max=254),
        Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Indirizzo e-mail non valido.")),
    ])
    role = SelectField(_l("Ruolo"), choices=role_choices)
    #: Choices are the creditor's services (set by the view); none selected means every service.
    service_ids = SelectMultipleField(_l("Servizi visibili"), coerce=int)


class UserCreateForm(_UserFields):
    """A new officer."""

    username = StringField(_l("Nome utente"), validators=[
        DataRequired(_l("Indicare il nome utente.")), Length(max=80),
        Regexp(r"^[A-Za-z0-9._@-]+$", message=_l("Il nome utente ammette lettere, cifre, '.', '_', '-' e '@'.")),
    ])
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Indicare la password.")),
        Length(min=MIN_PASSWORD_LENGTH,
               message=_l("La password deve avere almeno %(n)d caratteri.", n=MIN_PASSWORD_LENGTH)),
    ])
    confirm = PasswordField(_l("Ripeti la password"), validators=[
        EqualTo("password", message=_l("Le due password non coincidono.")),
    ])


class UserEditForm(_UserFields):
    """What an admin may change on an officer (the username stays)."""

    active = BooleanField(_l("Utenza attiva"))


class PasswordResetForm(FlaskForm):
    """A new password for an officer."""

    password = PasswordField(_l("Nuova password"), validators=[
        DataRequired(_l("Indicare la password.")),
        Length(min=MIN_PASSWORD_LENGTH,
               message=_l("La password deve avere almeno %(n)d caratteri.", n=MIN_PASSWORD_LENGTH)),
    ])
    confirm = PasswordField(_l("Ripeti la password"), validators=[
        EqualTo("password", message=_l("Le due password non coincidono.")),
    ])


class ApiTokenForm(FlaskForm):
    """A new API token for one of the Comune's systems."""

    name = StringField(_l("Nome del sistema"), validators=[DataRequired(_l("Indicare il nome del sistema.")),
                                                            Length(max=30)])
    scope = SelectField(_l("Ambito"), choices=[SelectChoice("read", _l("Sola lettura")),
                                               SelectChoice("write", _l("Lettura e scrittura"))])
    #: Choices are the creditor's services (set by the view); none selected means every service.
    service_ids = SelectMultipleField(_l("Servizi consentiti"), coerce=int)
    expires_on = StringField(_l("Scadenza (facoltativa)"), validators=[Optional()])


class WebhookForm(FlaskForm):
    """A new webhook subscriber: where to send, which events, which services."""

    url = StringField(_l("Indirizzo (URL) del sistema ricevente"),
                      validators=[DataRequired(_l("Indicare l'indirizzo del sistema ricevente.")), Length(max=500)])
    #: Choices set by the view (every event); none selected means all of them.
    events = SelectMultipleField(_l("Eventi (nessuno: tutti)"))
    #: Choices are the creditor's services (set by the view); none selected means every service.
    service_ids = SelectMultipleField(_l("Servizi (nessuno: tutti)"), coerce=int)


# --- Interessi, sanzioni e solleciti ----------------------------------------------------------------------------------


class LegalRateForm(FlaskForm):
    """A row of the legal-rate table; :func:`portal.collections.settings.save_legal_rate` checks the values."""

    effective_from = StringField(_l("In vigore dal"))
    percent = StringField(_l("Tasso annuo (%)"))
    decree = StringField(_l("Decreto (facoltativo)"), validators=[Length(max=140)])


class _TypedField(StringField):
    """A text input read into a value by ``parse`` (``None`` when empty) and shown back by ``show``; what cannot be
    read is an Italian error on the field, the typed text kept in the input."""

    message = _l("Valore non valido.")

    def parse(self, text: str):
        raise NotImplementedError

    def show(self, value) -> str:
        return str(value)

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = (valuelist[0] or "").strip()[:40]
        self.data = None
        if text:
            self.data = self.parse(text)

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else self.show(self.data)


class EuroField(_TypedField):
    """An amount typed in euro (``1.234,56``), kept as integer cents."""

    def parse(self, text):
        try:
            return parse_euro(text, allow_zero=True)
        except AmountError as exc:
            raise ValueError(str(exc)) from exc

    def show(self, value):
        return format_euro(value, symbol=False)


class NumberField(_TypedField):
    """A decimal number typed with a comma or a dot (``1,5``), kept as a ``Decimal``."""

    def parse(self, text):
        value = collection_settings.parse_decimal(text)
        if value is None:
            raise ValueError(_l("Indicare un numero, ad esempio 1,5."))
        return value

    def show(self, value):
        return as_text(value).replace(".", ",")


class WholeDaysField(_TypedField):
    """A whole number of days."""

    def parse(self, text):
        if not (text.isascii() and text.isdigit()) or len(text) > 5:
            raise ValueError(_l("Indicare un numero intero di giorni."))
        return int(text)


class ItalianDateField(_TypedField):
    """A date typed as gg/mm/aaaa (or sent as aaaa-mm-gg by a date input)."""

    def parse(self, text):
        day = parse_date_input(text)
        if day is None:
            raise ValueError(_l("Data non valida: usare gg/mm/aaaa."))
        return day

    def show(self, value):
        return f"{value:%d/%m/%Y}"


def _policy_field(name: str, kind: str, label: str):
    validators = [] if name in collection_settings.OPTIONAL_FIELDS or kind == "bool" else [
        InputRequired(_l("Indicare un valore."))]
    label = _l(label)
    if kind == "bool":
        return BooleanField(label)
    if kind == "choice":
        # The domain refuses an unknown choice, in Italian, with the other rules.
        return SelectField(label, validate_choice=False, choices=[
            SelectChoice(value, _l(text)) for value, text in collection_settings.CHOICES[name]])
    if kind == "text":
        return StringField(label, validators=[Optional(), Length(max=35)])
    field = {"int": WholeDaysField, "cents": EuroField, "decimal": NumberField, "date": ItalianDateField}[kind]
    return field(label, validators=validators)


#: A service's collection policy, one input per :data:`portal.collections.settings.POLICY_FIELDS` entry (the
#: domain checks the rules: ranges, spreads, caps in order, taxonomy codes).
PolicyForm = type("PolicyForm", (FlaskForm,), {
    "__doc__": "A service's collection policy.",
    **{name: _policy_field(name, kind, label) for name, kind, label in collection_settings.POLICY_FIELDS}})
