"""Fxiaoke CRM data-change callbacks: signature, AES content, signed acknowledgement.

Pure functions, shared by the receiver (the webhook route, later) and the sandbox
that sends callbacks. Everything follows docs/vendors/fxiaoke.md §5 (official demo
`fsxiaoke/open-fxiaoke-demo`: EventCallbackController.java, SignUtil.java),
verified against the demo's published test vector:

- body: {signature, timestamp, nonce, messageId, retryTimes?, enterpriseAccount,
  encryptedContent};
- signature = sha1_hex(timestamp + nonce + messageId + [retryTimes when present]
  + enterpriseAccount + encryptedContent + aesKey), plain concatenation;
- aesKey is base64 of 32 bytes; content is AES-256-CBC, PKCS5 padding, key = those
  32 bytes, IV = their first 16 bytes, base64 encoded;
- the reply is {timestamp, nonce, encryptedResult = AES("success"),
  signature = sha1_hex(timestamp + nonce + encryptedResult + aesKey)}.

Because the signature is a plain concatenation, characters can move between adjacent
fields (messageId / enterpriseAccount, timestamp / nonce, retryTimes) without changing
it. So the messageId inside the encrypted content must equal the outer one (the
content cannot be edited without the key), the receiver dedupes on that decrypted
messageId, and the outer timestamp (the delivery time: the demo's retry carries one
~9 minutes after its event's) must be within FRESHNESS_MS of the receiver's clock.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SUCCESS = "success"
FRESHNESS_MS = 5 * 60 * 1000  # our window, either side: Fxiaoke documents none
_SIGNED_FIELDS = ("timestamp", "nonce", "messageId", "enterpriseAccount", "encryptedContent")


class CallbackError(ValueError):
    """A callback that cannot be trusted or read. The message never contains the key."""


class CallbackForged(CallbackError):
    """Signed, yet not a genuine delivery: signed fields that disagree with the encrypted
    content, or a timestamp outside the freshness window (a replay)."""


@dataclass(frozen=True)
class CallbackEvent:
    """The decrypted content: which record of which object changed, and how."""

    event_type: str  # "update" seen (§5); add / invalid / delete presumed [INF]
    api_name: str
    data_id: str
    message_id: str  # from the content, equal to the signed one: the event's identity
    timestamp: int | None  # ms
    tenant_id: Any
    raw: dict[str, Any]


def key_bytes(aes_key: str) -> bytes:
    """The 32 key bytes of a base64 aesKey, or CallbackError."""
    try:
        raw = base64.b64decode(aes_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CallbackError("the aesKey is not valid base64") from None
    if len(raw) != 32:
        raise CallbackError(f"the aesKey must decode to 32 bytes (AES-256), not {len(raw)}")
    return raw


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def encrypt(plaintext: str, aes_key: str) -> str:
    """AES-256-CBC/PKCS5 with IV = key[:16], base64 (SignUtil.encryptAes)."""
    key = key_bytes(aes_key)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def decrypt(ciphertext: str, aes_key: str) -> str:
    """The inverse of encrypt(); CallbackError when it is not ours or is damaged."""
    key = key_bytes(aes_key)
    try:
        data = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackError("encryptedContent is not valid base64") from None
    if not data or len(data) % 16:
        raise CallbackError("encryptedContent is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise CallbackError("encryptedContent does not decrypt with this aesKey") from None


def callback_signature(body: dict[str, Any], aes_key: str) -> str:
    """sha1_hex of the signed fields in their order, retryTimes included when present."""
    parts = [_text(body.get(name)) for name in _SIGNED_FIELDS[:3]]
    if body.get("retryTimes") is not None:
        parts.append(_text(body["retryTimes"]))
    parts += [_text(body.get(name)) for name in _SIGNED_FIELDS[3:]]
    return sha1_hex("".join(parts) + aes_key)


def verify(body: Any, aes_key: str) -> CallbackEvent:
    """Check a callback body's signature and decrypt its content, or raise CallbackError."""
    if not isinstance(body, dict):
        raise CallbackError("the callback body must be a JSON object")
    missing = [n for n in ("signature", *_SIGNED_FIELDS) if body.get(n) in (None, "")]
    if missing:
        raise CallbackError(f"the callback lacks {', '.join(missing)}")
    retry = body.get("retryTimes")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int)):
        raise CallbackError("retryTimes must be an integer")
    key_bytes(aes_key)  # a misconfigured key is reported as such, not as a bad signature
    expected = callback_signature(body, aes_key)
    if not hmac.compare_digest(expected, str(body["signature"]).lower()):
        raise CallbackError("the callback signature does not match (wrong aesKey or altered)")
    content = decrypt(str(body["encryptedContent"]), aes_key)
    try:
        event = json.loads(content)
    except ValueError:
        raise CallbackError("the decrypted content is not JSON") from None
    if not isinstance(event, dict) or not event.get("dataId") or not event.get("apiName"):
        raise CallbackError("the decrypted content lacks apiName or dataId")
    if event.get("messageId") != body["messageId"]:
        raise CallbackForged("the messageId inside the encrypted content differs from the "
                             "signed messageId (fields shifted after signing)")
    return CallbackEvent(
        event_type=str(event.get("eventType") or ""),
        api_name=str(event["apiName"]),
        data_id=str(event["dataId"]),
        message_id=str(event["messageId"]),
        timestamp=event.get("timestamp"),
        tenant_id=event.get("tenantId"),
        raw=event,
    )


def check_fresh(timestamp: int, now_ms: int | None = None) -> None:
    """CallbackForged unless `timestamp` (ms) is within FRESHNESS_MS of now, either side."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - timestamp) > FRESHNESS_MS:
        raise CallbackForged(
            f"the callback timestamp is {abs(now - timestamp) // 1000} s "
            f"{'behind' if timestamp < now else 'ahead of'} this server's clock; callbacks more "
            f"than {FRESHNESS_MS // 60000} minutes either side are refused (a replay, or a "
            "wrong clock here)")


def acknowledgement(
    aes_key: str, *, result: str = SUCCESS, timestamp: int | None = None, nonce: str | None = None
) -> dict[str, Any]:
    """The signed, encrypted reply the platform expects (§5: AES("success"))."""
    at = int(time.time() * 1000) if timestamp is None else timestamp
    nonce = nonce or str(secrets.randbelow(1_000_000))
    encrypted = encrypt(result, aes_key)
    return {"timestamp": at, "nonce": nonce, "encryptedResult": encrypted,
            "signature": sha1_hex(f"{at}{nonce}{encrypted}{aes_key}")}


def read_acknowledgement(body: Any, aes_key: str) -> str:
    """The decrypted result of a reply after checking its signature (what the sender does)."""
    if not isinstance(body, dict) or any(
        body.get(n) in (None, "") for n in ("timestamp", "nonce", "encryptedResult", "signature")
    ):
        raise CallbackError("the acknowledgement lacks timestamp, nonce, encryptedResult "
                            "or signature")
    expected = sha1_hex(f"{body['timestamp']}{body['nonce']}{body['encryptedResult']}{aes_key}")
    if not hmac.compare_digest(expected, str(body["signature"]).lower()):
        raise CallbackError("the acknowledgement signature does not match")
    return decrypt(str(body["encryptedResult"]), aes_key)


def build_callback(
    event: dict[str, Any],
    aes_key: str,
    *,
    enterprise_account: str,
    message_id: str,
    retry_times: int | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A callback body signed and encrypted exactly as the platform sends it (sandbox side)."""
    body: dict[str, Any] = {
        "timestamp": int(time.time() * 1000) if timestamp is None else timestamp,
        "nonce": nonce or secrets.token_urlsafe(12)[:16],
        "messageId": message_id,
    }
    if retry_times is not None:
        body["retryTimes"] = retry_times
    body["enterpriseAccount"] = enterprise_account
    content = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    body["encryptedContent"] = encrypt(content, aes_key)
    body["signature"] = callback_signature(body, aes_key)
    return body


def _text(value: Any) -> str:
    # Java string concatenation of the demo's Long/Integer/String fields.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
