"""HubSpot: connector, auth, mapping and sandbox."""

from connectors.hubspot.client import HubSpotConfig, HubSpotSecrets
from connectors.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConfig", "HubSpotConnector", "HubSpotSecrets"]
