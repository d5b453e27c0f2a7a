"""Command-line entry points: ``flask demo load``, ``flask positions export``, ``flask users create``."""

import click
from flask.cli import AppGroup

from portal.extensions import db

demo_cli = AppGroup("demo", help="Dati dimostrativi.")
positions_cli = AppGroup("positions", help="Posizioni debitorie.")
users_cli = AppGroup("users", help="Utenti del back office.")


@demo_cli.command("load")
@click.option("--positions", "position_count", default=1000, show_default=True, help="Posizioni da creare.")
@click.option("--if-empty", is_flag=True, help="Non fare nulla se il database contiene già un ente.")
def demo_load(position_count: int, if_empty: bool):
    """Load the demo Comune, its services, 200 debtors and positions in every state; print the logins."""
    from portal import demo

    try:
        result = demo.load(db.session, positions=position_count, if_empty=if_empty)
    except demo.DemoAlreadyLoaded as exc:
        raise click.ClickException(str(exc)) from exc
    if result is None:
        click.echo("Il database contiene già dei dati: demo non ricaricata.")
    else:
        db.session.commit()
        click.echo(f"Demo caricata: {result.creditor.name}, {result.position_count} posizioni.")
    _echo_logins(demo.logins())


def _echo_logins(logins) -> None:
    click.echo("Accessi dimostrativi al back office, http://127.0.0.1:5000/officer/ (utente / password / ruolo):")
    for username, password, role in logins:
        click.echo(f"  {username:<14} {password:<22} {role}")


@positions_cli.command("export")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def positions_export(path: str):
    """Write every position, one row per payment option, to a CSV file."""
    from portal.reports import exports

    with open(path, "w", newline="", encoding="utf-8") as out:
        count = exports.write_all_positions_csv(db.session, out)
    click.echo(f"{count} righe scritte in {path}")


@users_cli.command("create")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Nome e cognome.")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), default="operator", show_default=True)
@click.option("--creditor", "creditor_fiscal_code", help="Codice fiscale dell'ente (se ce n'è più di uno).")
@click.password_option(help="Password (almeno 10 caratteri).")
def users_create(username: str, full_name: str, role: str, creditor_fiscal_code: str | None, password: str):
    """Create a back-office user."""
    import sqlalchemy as sa

    from portal.accounts.services import AccountError, create_user
    from portal.ledger.models import Creditor

    query = sa.select(Creditor)
    if creditor_fiscal_code:
        query = query.where(Creditor.fiscal_code == creditor_fiscal_code)
    creditors = db.session.scalars(query).all()
    if len(creditors) != 1:
        raise click.ClickException("Indicare con --creditor uno degli enti configurati.")
    try:
        create_user(db.session, creditors[0], username=username, full_name=full_name, password=password, role=role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Utente {username} creato.")


def register(app) -> None:
    """Add the command groups to the app's CLI."""
    for group in (demo_cli, positions_cli, users_cli):
        app.cli.add_command(group)
