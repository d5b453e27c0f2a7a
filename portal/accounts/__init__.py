"""Officer accounts: users, roles, service scope and login throttling."""
