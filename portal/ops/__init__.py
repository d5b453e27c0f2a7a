"""Operations: readiness checks, scrape-time metrics, ``flask doctor`` (plain modules) and the web endpoints that
expose them (``views``: ``/healthz``, ``/readyz``, ``/metrics``)."""
