"""Background jobs: RQ queues on Redis in production, in-process execution when no Redis is configured."""
