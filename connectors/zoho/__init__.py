"""Zoho CRM: connector, auth, mapping and sandbox."""

from connectors.zoho.client import ZohoConfig, ZohoSecrets
from connectors.zoho.connector import ZohoConnector

__all__ = ["ZohoConfig", "ZohoConnector", "ZohoSecrets"]
