"""CRM connector plugins and what they share (protocol, registry, HTTP layer)."""
