"""Pipedrive: connector, auth, mapping, webhooks, goal push and sandbox."""

from connectors.pipedrive.client import PipedriveConfig, PipedriveSecrets
from connectors.pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConfig", "PipedriveConnector", "PipedriveSecrets"]
