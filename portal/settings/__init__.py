"""A creditor's configuration: the Ente's data and logo, its pagoPA accounts and its services (no Flask)."""
