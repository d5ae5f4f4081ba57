"""Word lists for the synthetic company: names, industries, products, currencies.

Kept apart from dataset.py so the generator reads as logic, not data.
"""

from decimal import Decimal

COMPANY_NAME = "Acme Demo Inc."
EMAIL_DOMAIN = "acme-demo.com"
HOME_CURRENCY = "USD"

# Units of the currency per 1 unit of the home currency (docs/vendors/zoho.md §8 convention).
CURRENCY_RATES: dict[str, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "CNY": Decimal("7.10"),
    "JPY": Decimal("150.25"),
}
# Share of deals booked in each currency (most in the home currency).
CURRENCY_WEIGHTS = {"USD": 70, "EUR": 12, "GBP": 8, "CNY": 6, "JPY": 4}

FIRST_NAMES = (
    "Ana",
    "Bruno",
    "Chloé",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiroshi",
    "Ingrid",
    "José",
    "Karen",
    "Liam",
    "Mei",
    "Nora",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Valeria",
    "Wei",
    "Yusuf",
    "Zoë",
    "Marcus",
    "Aisha",
    "Lukas",
    "Sofia",
    "Kenji",
)
LAST_NAMES = (
    "Lima",
    "Costa",
    "Martin",
    "Okafor",
    "Novak",
    "Haddad",
    "Kim",
    "Tanaka",
    "Larsen",
    "Álvarez",
    "Schmidt",
    "Murphy",
    "Chen",
    "Fischer",
    "Rahman",
    "Patel",
    "Dubois",
    "Romero",
    "Berg",
    "Singh",
    "Nakamura",
    "Rossi",
    "Zhang",
    "Demir",
    "Walsh",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Silva",
)
TEAMS = ("East", "West")
MANAGER_TEAM = "Management"
REP_ROLE = "Sales Rep"
MANAGER_ROLE = "Sales Manager"

ACCOUNT_PREFIXES = (
    "Acorn",
    "Blue Harbor",
    "Cedar",
    "Delta",
    "Evergreen",
    "Falcon",
    "Granite",
    "Helix",
    "Iron Peak",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Northwind",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Redwood",
    "Summit",
    "Tidal",
    "Umbra",
    "Vertex",
    "Willow",
    "Xenon",
    "Yellowstone",
    "Zenith",
    "Atlas",
    "Beacon",
    "Cobalt",
    "Dynamo",
    "Ember",
    "Fjord",
    "Gryphon",
    "Horizon",
    "Indigo",
    "Jade",
    "Keystone",
    "Lattice",
    "Mosaic",
    "Nimbus",
    "Onyx",
    "Polaris",
    "Quasar",
    "Riverbend",
    "Sapphire",
    "Terra",
    "Unity",
    "Vanguard",
    "Wavecrest",
    "Yarrow",
    "Zephyr",
    "Müller & Sohn",
    "Chanay",
    "Sakura",
    "Nordlys",
    "Santa Clara",
    "星辰",
    "Kappa",
    "Lotus",
)
ACCOUNT_MIDDLES = (
    "Analytics",
    "Logistics",
    "Foods",
    "Robotics",
    "Health",
    "Energy",
    "Media",
    "Systems",
    "Textiles",
    "Pharma",
    "Labs",
    "Motors",
    "Capital",
    "Retail",
    "Software",
    "Materials",
    "Aerospace",
    "Farms",
    "Networks",
    "Design",
    "Brewing",
    "Marine",
    "Security",
    "Tools",
)
ACCOUNT_SUFFIXES = ("Inc.", "Ltd", "GmbH", "LLC", "S.A.", "Co.", "Group", "K.K.", "科技有限公司")
INDUSTRIES = (
    "Technology",
    "Manufacturing",
    "Healthcare",
    "Financial Services",
    "Retail",
    "Education",
    "Government/Military",
    "Communications",
    "Consulting",
    "Real Estate",
    "Transportation",
)
PRODUCTS = (
    "50 seats",
    "200 seats",
    "Enterprise plan",
    "Pilot",
    "Expansion",
    "Support add-on",
    "Onboarding services",
    "Analytics module",
    "API package",
    "Multi-year deal",
)

# (pipeline, name, probability, category); order is the list order within a pipeline.
PIPELINE_STAGES: dict[str, tuple[tuple[str, int, str], ...]] = {
    "Standard": (
        ("Qualification", 10, "open"),
        ("Needs Analysis", 20, "open"),
        ("Proposal/Price Quote", 60, "open"),
        ("Negotiation/Review", 80, "open"),
        ("Closed Won", 100, "won"),
        ("Closed Lost", 0, "lost"),
        ("Closed-Lost to Competition", 0, "lost"),
        ("Disqualified", 0, "lost"),  # typed lost, no "lost" in its name
    ),
    "Renewals": (
        ("Renewal Due", 50, "open"),
        ("Renewal Negotiation", 75, "open"),
        ("Renewed", 100, "won"),
        ("Churned", 0, "lost"),  # typed lost, no "lost" in its name
    ),
}

ACTIVITY_SUBJECTS: dict[str, tuple[str, ...]] = {  # four each
    "call": ("Discovery call", "Follow-up call", "Pricing call", "Check-in call"),
    "meeting": ("Demo", "On-site visit", "Negotiation meeting", "Kick-off"),
    "task": ("Send proposal", "Prepare quote", "Update forecast", "Send contract"),
    "note": ("Call notes", "Visit report", "Customer feedback", "Next steps"),
}
