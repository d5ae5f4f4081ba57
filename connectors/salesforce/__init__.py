"""Salesforce connector (REST API, SOQL): docs/salesforce.md for users,
docs/vendors/salesforce.md for the vendor behaviour it relies on."""

from connectors.salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConnector"]
