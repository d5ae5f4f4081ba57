"""Helpers for the digest tests: a digest of made-up reps, the chat robot sandbox behind
the vendors' own hosts (an ASGI transport), and the robots' credentials."""

from typing import Any

import httpx

from api.chat_sandbox import ChatSandbox, Robot, create_app
from core.digests.content import Digest, Lines, Row

WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wk-693axxx6-7aoc"
DINGTALK_URL = "https://oapi.dingtalk.com/robot/send?access_token=dt-token-1"
DINGTALK_SECRET = "SEC0123456789abcdef"
FEISHU_URL = "https://open.feishu.cn/open-apis/bot/v2/hook/fs-hook-1"
FEISHU_SECRET = "demo"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slacksecret1"
URLS = {"wecom": WECOM_URL, "dingtalk": DINGTALK_URL, "feishu": FEISHU_URL,
        "slack": SLACK_URL}
SECRETS = {"dingtalk": DINGTALK_SECRET, "feishu": FEISHU_SECRET}


def robots(**kwargs: Any) -> ChatSandbox:
    """A sandbox knowing the four robots above (signing on for DingTalk and Feishu, the
    keyword "crmsync" on both)."""
    return ChatSandbox(
        wecom={"wk-693axxx6-7aoc": Robot()},
        dingtalk={"dt-token-1": Robot(DINGTALK_SECRET, ("crmsync",))},
        feishu={"fs-hook-1": Robot(FEISHU_SECRET, ("crmsync",))},
        slack={"T000/B000/slacksecret1": Robot()}, **kwargs)


def transport(sandbox: ChatSandbox) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=create_app(sandbox))


def sample_digest(language: str = "en", reps: int = 3, items: int = 0) -> Digest:
    """A digest of `reps` made-up reps and, with `items`, a list of that many lines."""
    rows = [Row(f"Rep {i:03} 李娜", f"{(reps - i) * 1000:,.2f}", str(reps - i), "85.0%")
            for i in range(reps)]
    lists = [Lines("Hygiene", [f"Deal {i:03} <b> · Ann Lee · stale" for i in range(items)],
                   "No issues.")] if items else []
    return Digest(language=language, title="crmsync sales digest",
                  subtitle="Week 2026-11-30 – 2026-12-06 · everyone", currency="CNY",
                  reps=rows, teams=[Row("East", "3,000.00", "3", "-")],
                  total=Row("Total", "6,000.00", "6", "-"), lists=lists)
