"""Signed webhooks to the Comune's systems: subscribers, events written with the ledger change, durable delivery.

- :mod:`portal.webhooks.models`: subscribers, events and deliveries (the durable outbox of outbound calls);
- :mod:`portal.webhooks.events`: turns timeline events (paid, reported, cancelled, …) and finished imports into
  webhook events and deliveries in the very transaction that made the change;
- :mod:`portal.webhooks.delivery`: signs and sends due deliveries, retrying with backoff from the database;
- :mod:`portal.webhooks.services`: what admins do (add a subscriber, rotate its secret, send again).
"""
