"""The dashboard's languages: every message key a template or the web code uses exists in
every language, the languages have the same keys and fields, the browser's language is
picked as documented, and numbers, money and dates are formatted per language."""

import ast
import re
import string
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from api.web import i18n
from api.web.goals import PUSH_STATES
from api.web.i18n import LANGUAGES, MESSAGES, Formats, pick_language
from api.web.leaderboard import COLUMNS, PERIOD_CHOICES
from api.web.operations import BACKFILL_STATES
from core.accounts import Role
from core.digests.content import LANGUAGES as DIGEST_LANGUAGES
from core.digests.platforms import PLATFORMS
from core.goals.split import SplitRule
from core.goals.targets import TARGET_PROBLEMS
from core.hygiene import RULES
from core.metrics.definitions import DrillMetric
from core.metrics.scorecard import FIGURES
from core.security import SCOPES
from core.types import ActivityType, ConnectionStatus, GoalMetric, RunStatus, SyncMode

WEB = Path(i18n.__file__).parent
TEMPLATE_KEY = re.compile(r"""\bt\(\s*["']([\w.-]+)["']""")
KEY_ARGUMENT = {"text": 1, "error_page": 2}  # web code: the argument holding a message key


def template_keys() -> set[str]:
    found = set()
    for path in (WEB / "templates").glob("*.html"):
        found |= set(TEMPLATE_KEY.findall(path.read_text()))
    return found


def code_keys() -> set[str]:
    """Literal keys given to text(lang, key) and error_page(request, status, key, ...)."""
    found = set()
    for path in WEB.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", "")
            index = KEY_ARGUMENT.get(name)
            if index is not None and len(node.args) > index and isinstance(
                    node.args[index], ast.Constant):
                found.add(node.args[index].value)
    return found


DYNAMIC = {"role.": tuple(Role), "period.": PERIOD_CHOICES, "metric.": tuple(DrillMetric),
           "col.": ("rep", *COLUMNS)}
DYNAMIC |= {"goals.metric.": tuple(GoalMetric), "goals.rule.": tuple(SplitRule),
            "goals.push.status.": PUSH_STATES, "goals.problem.": tuple(TARGET_PROBLEMS),
            "ops.status.": tuple(ConnectionStatus), "ops.run.": tuple(RunStatus),
            "ops.mode.": tuple(SyncMode), "ops.scope.": SCOPES,  # goals and operations pages
            "ops.platform.": tuple(PLATFORMS), "ops.language.": DIGEST_LANGUAGES,
            "ops.weekday.": tuple(str(d) for d in range(7)),
            "ops.digest_": ("weekly", "monthly"),  # the digest channels on operations
            "ops.backfill.": BACKFILL_STATES}  # the stage history backfills on operations
DYNAMIC |= {"hygiene.rule.": tuple(RULES), "hygiene.short.": tuple(RULES)}  # hygiene page
DYNAMIC["card."] = FIGURES  # the scorecards page: every figure (the team table: some)
DYNAMIC["activity."] = tuple(ActivityType)  # a scorecard's activities by type
"""Keys built from a value (t("col." ~ column)): each family and the values it takes."""


def dynamic_keys() -> set[str]:
    return {prefix + value for prefix, values in DYNAMIC.items() for value in values}


def test_keys_built_from_values_are_of_known_families():
    built = {key for key in template_keys() if key.endswith(".")}
    assert built and built <= set(DYNAMIC)


def test_the_scanners_find_the_keys_in_use():
    assert {"login.title", "board.heading", "deals.next"} <= template_keys()
    assert {"login.wrong", "error.csrf", "error.refused.title"} <= code_keys()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_in_use_is_translated(lang):
    used = {k for k in template_keys() | code_keys() if not k.endswith(".")} | dynamic_keys()
    assert sorted(used - set(MESSAGES[lang])) == []


def test_the_languages_have_the_same_keys_and_fields():
    assert set(MESSAGES) == set(LANGUAGES)
    english = MESSAGES["en"]
    for lang in LANGUAGES:
        assert sorted(set(MESSAGES[lang]) ^ set(english)) == [], lang
        for key, message in MESSAGES[lang].items():
            fields = {f for _, f, _, _ in string.Formatter().parse(message) if f}
            assert fields == {f for _, f, _, _ in string.Formatter().parse(english[key])
                              if f}, (lang, key)
            assert message.strip(), (lang, key)


def test_chinese_messages_are_chinese():
    english = MESSAGES["en"]
    same = [k for k, v in MESSAGES["zh"].items() if v == english[k] and re.search("[a-z]", v)]
    assert same == []


@pytest.mark.parametrize("cookie, header, expected", [
    (None, None, "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, "zh-TW", "zh"),
    (None, "zh-Hans-CN", "zh"),
    (None, "en-US,en;q=0.9,zh-CN;q=0.8", "en"),
    (None, "en;q=0.5,zh;q=0.8", "zh"),
    (None, "fr-FR,de;q=0.8", "en"),
    (None, "fr-FR,zh;q=0.3", "zh"),
    (None, "zh;q=0,en", "en"),
    (None, "zh;q=abc,en;q=0.1", "en"),
    ("zh", "en-US", "zh"),
    ("en", "zh-CN", "en"),
    ("klingon", "zh-CN", "zh"),
])
def test_the_language_is_the_cookie_else_the_browsers(cookie, header, expected):
    assert pick_language(cookie, header) == expected


def test_formats_per_language_keep_every_digit():
    en, zh = Formats("en"), Formats("zh")
    assert en.money(Decimal("1234567.5"), "USD") == "$1,234,567.50"
    assert zh.money(Decimal("1234567.5"), "USD") == "US$1,234,567.50"
    assert zh.money(Decimal("1234.5678"), "CNY") == "¥1,234.5678"  # never rounded here
    assert en.money(Decimal("-0.01"), "EUR") == "-€0.01"
    assert en.money(None, "USD") == "–" and en.money(Decimal(5), None) == "5"
    assert en.percent(Decimal("0.6667")) == "66.67%"
    assert en.percent(Decimal("1.2345")) == "123.45%"
    assert en.percent(None) == "–"
    assert en.number(Decimal("19.50")) == "19.5" and zh.number(12345) == "12,345"
    assert en.day(date(2025, 4, 1)) == "Apr 1, 2025"
    assert zh.day(date(2025, 4, 1)) == "2025年4月1日"
    assert zh.range(date(2025, 4, 1), date(2025, 6, 30)) == "2025年4月1日至2025年6月30日"
