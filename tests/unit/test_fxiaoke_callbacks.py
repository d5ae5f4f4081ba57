"""Fxiaoke CRM callback crypto against the official demo's published test vector
(docs/vendors/fxiaoke.md §5)."""

import base64
import hashlib
import json

import pytest

from connectors.fxiaoke import callbacks
from connectors.fxiaoke.callbacks import CallbackError

# fsxiaoke/open-fxiaoke-demo: EventCallbackController.java (aesKey) and
# EventCallbackControllerTest.java (the body), verified in docs/vendors/fxiaoke.md §5.
DEMO_KEY = "O0YjM0EDOygzNykzMzUjLwUTN3MjL5ADN1QjM5gTM0A="
VECTOR = {
    "signature": "4d7c6742d8efed705054fe895ee487df738c8c50",
    "timestamp": 1604644770244,
    "nonce": "mi3wrpKNnq4YdIZC",
    "messageId": "AC11291700002A9F00000608C038697A0",
    "retryTimes": 1,
    "enterpriseAccount": "gxcxkj",
    "encryptedContent": (
        "tRPD30ygQKxFurdWxHQKpRypuXNbRcW/knsKZBCPJv9bsKnQJlUr26USpOgJqhVUm5Q2NiVG1IBrCr0dbrsreR"
        "ZY6Z5/fbw75IlGQ2d7PkMWtVTAE0RG62j7HJQWAwm+XdmQC4y1AbjHzatjjrXiCKcId112DHZSqB0qznivDSty"
        "wTjscnNWhaR7xbnSbmKQWsF5YlPUEudZ+P07Ol/cd6F8IXOo+nEu7UH21hRSgKI="),
}
PLAIN = {"tenantId": 691413, "eventType": "update", "apiName": "AccountObj",
         "dataId": "5f9cd4e6e4400e0001217faa", "timestamp": 1604644208525,
         "messageId": "AC11291700002A9F00000608C038697A0"}


def test_the_published_vector_verifies_and_decrypts():
    event = callbacks.verify(dict(VECTOR), DEMO_KEY)
    assert event.raw == PLAIN
    assert (event.event_type, event.api_name, event.data_id) == (
        "update", "AccountObj", "5f9cd4e6e4400e0001217faa")
    assert event.message_id == VECTOR["messageId"] and event.tenant_id == 691413


def test_the_signature_includes_retry_times_when_present():
    assert callbacks.callback_signature(VECTOR, DEMO_KEY) == VECTOR["signature"]
    without = {k: v for k, v in VECTOR.items() if k != "retryTimes"}
    assert callbacks.callback_signature(without, DEMO_KEY) != VECTOR["signature"]
    with pytest.raises(CallbackError, match="signature"):
        callbacks.verify(without, DEMO_KEY)  # dropping retryTimes breaks the signature


@pytest.mark.parametrize("field, value", [
    ("timestamp", 1604644770245),
    ("nonce", "mi3wrpKNnq4YdIZD"),
    ("messageId", "AC11291700002A9F00000608C038697A1"),
    ("retryTimes", 2),
    ("enterpriseAccount", "gxcxkk"),
    ("encryptedContent", "A" + VECTOR["encryptedContent"][1:]),  # type: ignore[index]
    ("signature", "5d7c6742d8efed705054fe895ee487df738c8c50"),
])
def test_any_tampered_field_is_rejected(field, value):
    with pytest.raises(CallbackError, match="signature"):
        callbacks.verify({**VECTOR, field: value}, DEMO_KEY)


def test_a_forger_who_re_signs_without_the_key_cannot_pass():
    forged = dict(VECTOR, enterpriseAccount="attacker")
    text = "".join(str(forged[k]) for k in ("timestamp", "nonce", "messageId", "retryTimes",
                                            "enterpriseAccount", "encryptedContent"))
    forged["signature"] = hashlib.sha1(text.encode()).hexdigest()  # no aesKey appended
    with pytest.raises(CallbackError):
        callbacks.verify(forged, DEMO_KEY)


def test_the_wrong_key_is_rejected_and_never_echoed():
    other = base64.b64encode(bytes(range(32))).decode()
    with pytest.raises(CallbackError) as caught:
        callbacks.verify(dict(VECTOR), other)
    assert other not in str(caught.value) and DEMO_KEY not in str(caught.value)


@pytest.mark.parametrize("key, message", [
    ("not base64!!", "base64"),
    (base64.b64encode(b"short").decode(), "32 bytes"),
])
def test_a_malformed_key_says_so(key, message):
    with pytest.raises(CallbackError, match=message):
        callbacks.verify(dict(VECTOR), key)


@pytest.mark.parametrize("body", [None, [], {"signature": "x"}, {**VECTOR, "nonce": ""},
                                  {**VECTOR, "retryTimes": "1"}])
def test_incomplete_bodies_are_rejected(body):
    with pytest.raises(CallbackError):
        callbacks.verify(body, DEMO_KEY)


def test_correctly_signed_garbage_content_is_rejected():
    body = {k: v for k, v in VECTOR.items() if k != "signature"}
    body["encryptedContent"] = base64.b64encode(b"0123456789abcdef").decode()
    body["signature"] = callbacks.callback_signature(body, DEMO_KEY)
    with pytest.raises(CallbackError, match="decrypt"):
        callbacks.verify(body, DEMO_KEY)
    body["encryptedContent"] = callbacks.encrypt("not json", DEMO_KEY)
    body["signature"] = callbacks.callback_signature(body, DEMO_KEY)
    with pytest.raises(CallbackError, match="JSON"):
        callbacks.verify(body, DEMO_KEY)


def test_encrypt_matches_the_platform_ciphertext():
    plain = json.dumps(PLAIN, separators=(",", ":"))
    assert callbacks.encrypt(plain, DEMO_KEY) == VECTOR["encryptedContent"]


def test_the_acknowledgement_is_signed_and_encrypted_success():
    reply = callbacks.acknowledgement(DEMO_KEY, timestamp=1604644770300, nonce="123456")
    assert set(reply) == {"timestamp", "nonce", "encryptedResult", "signature"}
    assert callbacks.decrypt(reply["encryptedResult"], DEMO_KEY) == "success"
    text = f"1604644770300123456{reply['encryptedResult']}{DEMO_KEY}"
    assert reply["signature"] == hashlib.sha1(text.encode()).hexdigest()
    assert callbacks.read_acknowledgement(reply, DEMO_KEY) == "success"
    with pytest.raises(CallbackError):
        callbacks.read_acknowledgement({**reply, "nonce": "654321"}, DEMO_KEY)


def test_build_callback_round_trips_with_and_without_retry_times():
    for retry in (None, 0, 3):
        body = callbacks.build_callback(PLAIN, DEMO_KEY, enterprise_account="acme",
                                        message_id=PLAIN["messageId"], retry_times=retry)  # type: ignore[arg-type]
        assert ("retryTimes" in body) == (retry is not None)
        assert callbacks.verify(body, DEMO_KEY).raw == PLAIN


# ---- replays: fields shifted under the same signature, old deliveries --------------------
def _shifted(body: dict, moved: int = 2) -> dict:
    """The last characters of messageId moved to the front of enterpriseAccount: the
    concatenation, hence the signature, is unchanged."""
    cut = len(body["messageId"]) - moved
    return {**body, "messageId": body["messageId"][:cut],
            "enterpriseAccount": body["messageId"][cut:] + body["enterpriseAccount"]}


def test_fields_shifted_under_the_same_signature_are_refused():
    body = callbacks.build_callback(PLAIN, DEMO_KEY, enterprise_account="gxcxkj",
                                    message_id=str(PLAIN["messageId"]))
    callbacks.verify(body, DEMO_KEY)
    shifted = _shifted(body)
    assert callbacks.callback_signature(shifted, DEMO_KEY) == body["signature"]
    with pytest.raises(callbacks.CallbackForged, match="messageId inside"):
        callbacks.verify(shifted, DEMO_KEY)


def test_content_without_a_message_id_is_refused():
    content = {k: v for k, v in PLAIN.items() if k != "messageId"}
    body = callbacks.build_callback(content, DEMO_KEY, enterprise_account="gxcxkj",
                                    message_id="M1")
    with pytest.raises(callbacks.CallbackForged, match="messageId inside"):
        callbacks.verify(body, DEMO_KEY)


@pytest.mark.parametrize(("offset_ms", "fresh"), [
    (0, True), (-callbacks.FRESHNESS_MS, True), (callbacks.FRESHNESS_MS, True),
    (-callbacks.FRESHNESS_MS - 1, False), (callbacks.FRESHNESS_MS + 1, False),
])
def test_the_freshness_window_is_five_minutes_either_side(offset_ms, fresh):
    now = 1_764_900_000_000
    if fresh:
        callbacks.check_fresh(now + offset_ms, now)
    else:
        with pytest.raises(callbacks.CallbackForged, match="5 minutes"):
            callbacks.check_fresh(now + offset_ms, now)


def test_a_2001_timestamp_is_stale_against_the_real_clock():
    with pytest.raises(callbacks.CallbackForged, match="behind this server's clock"):
        callbacks.check_fresh(978_307_200_000)  # 2001-01-01
