"""Logging for `crmsync serve` and `crmsync worker`: JSON lines by default, never a secret.

Each line is one JSON object: ts, level, logger, message, and the context the
code passed in `extra` (connection_id, run_id, api_calls, ...). A last-line
filter masks anything that looks like a credential (OAuth tokens and client
secrets in URLs or bodies, Authorization headers, passwords in database URLs),
so a library that logs a request URL cannot leak one.
"""

import json
import logging
import re
from typing import Any

from core.config import Settings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_PATTERNS = (
    # key=value / "key": "value" for the credential names the CRMs use
    re.compile(r"""(?i)((?:refresh_token|access_token|client_secret|app_secret|permanent_code|"""
               r"""password|secret|aes_key)["']?\s*[=:]\s*["']?)[^&\s"',}]+"""),
    re.compile(r"(?i)((?:Bearer|Zoho-oauthtoken)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(://[^/\s:@]+:)[^@/\s]+(@)"),  # user:password@host
)
NOISY = ("httpx", "httpcore")  # request lines carry OAuth query strings


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by ***."""
    for pattern in _SECRET_PATTERNS:
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


def configure_logging(settings: Settings) -> None:
    """Route every logger (ours, uvicorn's, arq's) to stderr in CRMSYNC_LOG_FORMAT."""
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
