"""Acme CRM: a connector package of its own, registered through its entry point
(`acme = acmecrm.connector:AcmeConnector` in the group `crmsync.connectors`)."""
