"""The domain: store, sync engine, metrics and goals. Knows nothing of HTTP frameworks or CRMs."""
