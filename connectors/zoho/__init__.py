"""Zoho CRM: connector, auth, mapping and sandbox."""

from connectors.zoho.connector import ZohoConfig, ZohoConnector, ZohoSecrets

__all__ = ["ZohoConfig", "ZohoConnector", "ZohoSecrets"]
