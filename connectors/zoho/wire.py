"""What the Zoho connector and its sandbox share: where a record opens in Zoho CRM's web app.

docs/vendors/zoho.md §12: a record's page is
`https://crm.zoho.<dc>/crm/<org domain name>/tab/<module tab>/<record id>`; the tab of the
Deals module keeps its old name, Potentials.
"""

DEALS_TAB = "Potentials"
WEB_SERVERS = {  # §1 data centres; §12 the CRM web app's host in each
    "com": "https://crm.zoho.com",
    "eu": "https://crm.zoho.eu",
    "in": "https://crm.zoho.in",
    "com.au": "https://crm.zoho.com.au",
    "jp": "https://crm.zoho.jp",
    "com.cn": "https://crm.zoho.com.cn",
    "ca": "https://crm.zohocloud.ca",
    "sa": "https://crm.zoho.sa",
    "uk": "https://crm.zoho.uk",
    "ae": "https://crm.zoho.ae",
}
ORG_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # the org's domain_name (GET /org, §12), e.g. org60012345


def record_path(org: str | None, tab: str, record_id: str) -> str:
    """The path of a record's page: /crm/<org>/tab/<tab>/<id>, or /crm/tab/<tab>/<id>
    (the user's default org) without an org."""
    return f"/crm/{org}/tab/{tab}/{record_id}" if org else f"/crm/tab/{tab}/{record_id}"
