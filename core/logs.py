"""Logging for `crmsync serve` and `crmsync worker`: JSON lines by default, never a secret.

Each line is one JSON object: ts, level, logger, message, and the context the
code passed in `extra` (connection_id, run_id, api_calls, ...). A last-line
filter masks anything that looks like a credential, so a library that logs a
request URL cannot leak one: the value of every secret name (KNOWN_SECRET_NAMES
plus the fields of each connector's secrets model, given to configure_logging)
after `=` or `:` in URLs, query strings, JSON bodies and escaped JSON, in snake
case, kebab case or camelCase; Authorization header values; crmsync API keys
(`csk_...`); passwords in database URLs; the tokens of the dashboard's one-time links
(`/welcome/<token>`).
"""

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from core.config import Settings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
KNOWN_SECRET_NAMES = frozenset({"token", "secret", "password", "secret_key", "api_key"})
"""Secret names besides the connectors' secrets models: the tokens connectors obtain
(`access_token`, `corpAccessToken`), channel tokens, client secrets, our own keys. A
name also matches its camelCase and kebab-case forms and any longer name ending in it
(`refresh_token`, `corpAccessToken`, `appSecret`, `x-api-key`)."""
_FIXED_PATTERNS = (
    # Authorization schemes: Bearer, and vendors' own `<Vendor>-oauthtoken` schemes
    re.compile(r"(?i)((?:Bearer|[A-Za-z]+-oauthtoken)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(csk_)[A-Za-z0-9_-]+"),  # crmsync API keys, wherever they appear
    re.compile(r"(://[^/\s:@]+:)[^@/\s]+(@)"),  # user:password@host
    # the dashboard's one-time links, in paths and (URL-encoded) in query strings
    re.compile(r"(?i)((?:/|%2F)welcome(?:/|%2F))[A-Za-z0-9_-]+"),
    # chat robot webhooks (core/digests/): the URL is the credential
    re.compile(r"(/cgi-bin/webhook/send\?(?:[^\s\"']*&)?key=)[^&\s\"']+"),  # WeCom
    re.compile(r"(/open-apis/bot/v2/hook/)[^/?\s\"']+"),  # Feishu / Lark
    re.compile(r"(/services/[^/\s\"']+/[^/\s\"']+/)[^/?\s\"']+"),  # Slack
)
_names: set[str] = set(KNOWN_SECRET_NAMES)
_by_name: re.Pattern[str] | None = None
NOISY = ("httpx", "httpcore")  # request lines carry OAuth query strings


def add_secret_names(names: Iterable[str]) -> None:
    """Mask these names too (the fields of connectors' secrets models). Identifiers
    (`client_id`, `app_id`) stay readable: they are not secret on their own."""
    global _by_name
    _names.update(n.lower() for n in names if n and not n.lower().endswith("_id"))
    _by_name = None


def _name_pattern() -> re.Pattern[str]:
    global _by_name
    if _by_name is None:  # longest first; "_" in a name also matches "-" or nothing
        names = sorted(_names, key=len, reverse=True)
        alternatives = "|".join(re.escape(n).replace("_", "[_-]?") for n in names)
        _by_name = re.compile(  # key, optional (escaped) quote, = or :, optional quote
            rf"""(?i)((?:{alternatives})\\?["']?\s*[=:]\s*\\?["']?)[^&\s"'\\,;}}\]]+""")
    return _by_name


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by ***."""
    for pattern in (*_FIXED_PATTERNS, _name_pattern()):
        text = pattern.sub(lambda m: m.group(1) + "***" + (m.group(2) if m.lastindex == 2
                                                           else ""), text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(settings: Settings, secret_names: Iterable[str] = ()) -> None:
    """Route every logger (ours, uvicorn's, arq's) to stderr in CRMSYNC_LOG_FORMAT, masking
    `secret_names` (connectors.registry.secret_field_names()) besides the known ones."""
    add_secret_names(secret_names)
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = _gmtime
    else:
        formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def _gmtime(secs: float | None) -> Any:
    import time

    return time.gmtime(secs)
