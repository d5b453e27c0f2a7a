"""The credit ledger: creditors, services, debtors, positions, payment options, transfers, events.

Nothing in this package imports Flask: it is plain domain code on top of SQLAlchemy models.
"""
