"""``flask api token create|list|revoke``: tokens for scripts, tests and a first setup without the browser."""

from datetime import datetime, time

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from portal.accounts import api_tokens
from portal.extensions import db
from portal.ledger.models import Creditor, Service
from portal.settings.services import only_creditor

api_cli = AppGroup("api", help="Accesso dei sistemi esterni all'API REST.")
token_cli = AppGroup("token", help="Token dell'API.")
api_cli.add_command(token_cli)


def _creditor(fiscal_code: str | None) -> Creditor:
    creditor = only_creditor(db.session, fiscal_code)
    if creditor is None:
        raise click.ClickException("Indicare con --creditor uno degli enti configurati.")
    return creditor


@token_cli.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(api_tokens.SCOPES), default="read", show_default=True)
@click.option("--service", "service_codes", multiple=True, help="Codice di un servizio consentito (ripetibile).")
@click.option("--expires", type=click.DateTime(formats=["%Y-%m-%d"]), help="Scadenza (AAAA-MM-GG).")
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se ce n'è più di uno).")
def token_create(name: str, scope: str, service_codes: tuple[str, ...], expires: datetime | None,
                 creditor_fiscal_code: str | None):
    """Create a token and print it on the last line (it is shown only now)."""
    from portal.formatting import ROME

    creditor = _creditor(creditor_fiscal_code)
    services = []
    for code in service_codes:
        service = db.session.scalar(sa.select(Service).where(Service.creditor_id == creditor.id,
                                                             Service.code == code.upper()))
        if service is None:
            raise click.ClickException(f"Servizio sconosciuto: {code}")
        services.append(service)
    expires_at = datetime.combine(expires.date(), time.max, tzinfo=ROME) if expires else None
    try:
        issued = api_tokens.create_token(db.session, creditor, name=name, scope=scope, services=services,
                                         expires_at=expires_at)
    except api_tokens.TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Token «{issued.token.name}» ({api_tokens.SCOPE_LABELS[scope]}) creato; conservarlo ora, "
               "non sarà più mostrato:", err=True)
    click.echo(issued.secret)


@token_cli.command("list")
@click.option("--creditor", "creditor_fiscal_code")
def token_list(creditor_fiscal_code: str | None):
    """List the tokens: name, prefix, scope, services, state, last use."""
    for token in api_tokens.tokens_of(db.session, _creditor(creditor_fiscal_code).id):
        services = ",".join(s.code for s in token.services) or "tutti"
        click.echo(f"{token.name}\t{token.prefix}…\t{token.scope}\t{services}\t{token.state()}\t"
                   f"{token.last_used_at.isoformat() if token.last_used_at else '-'}")


@token_cli.command("revoke")
@click.argument("name")
@click.option("--creditor", "creditor_fiscal_code")
def token_revoke(name: str, creditor_fiscal_code: str | None):
    """Revoke a token now."""
    creditor = _creditor(creditor_fiscal_code)
    token = db.session.scalar(sa.select(api_tokens.ApiToken).where(api_tokens.ApiToken.creditor_id == creditor.id,
                                                                   api_tokens.ApiToken.name == name))
    if token is None:
        raise click.ClickException(f"Token sconosciuto: {name}")
    api_tokens.revoke(db.session, token)
    db.session.commit()
    click.echo(f"Token «{name}» revocato.")
