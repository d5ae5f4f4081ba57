"""Fxiaoke wire constants shared by the connector and the sandbox.

Cited as §n of docs/vendors/fxiaoke.md.
"""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

DEFAULT_BASE_URL = "https://open.fxiaoke.com"
CLOUD_HOSTS = (  # §1.2: the tenant's cloud decides the host
    "https://open.fxiaoke.com",
    "https://open-hwcloud.fxiaoke.com",
    "https://open-ale.fxiaoke.com",
    "https://open-hws.fxiaoke.com",
    "https://open-ksc.sharecrm.com",
    "https://open-na.sharecrm.com",
)

TOKEN_PATH = "/cgi/corpAccessToken/get/V2"  # §1.1
USER_BY_MOBILE_PATH = "/cgi/user/getByMobile"  # §1.1
DEPARTMENT_LIST_PATH = "/cgi/department/list"  # §3
USER_LIST_PATH = "/cgi/user/list"  # §3
DESCRIBE_PATH = "/cgi/crm/v2/object/describe"  # §2
QUERY_PATH = "/cgi/crm/v2/data/query"  # §2: standard (…Obj) objects
CUSTOM_QUERY_PATH = "/cgi/crm/custom/v2/data/query"  # §2: custom (…__c) objects

ACTIVITY_OBJECT = "ActiveRecordObj"  # §10: 销售记录, the follow-up records

MAX_LIMIT = 100  # §2 recommendation: limit <= 100
MAX_OFFSET = 10_000  # §2: larger offsets fail with 10013 "offset out of range 10000"
OPERATORS = frozenset({  # §2 (k8scat/fxiaoke object.go plus the transcription's two)
    "EQ", "N", "GT", "GTE", "LT", "LTE", "LIKE", "NLIKE", "IS", "ISN", "IN", "NIN",
    "BETWEEN", "NBETWEEN", "STARTWITH", "ENDWITH", "CONTAINS", "HASANYOF", "NHASANYOF",
})

# §6 error codes (always HTTP 200, branch on errorCode only)
OK = 0
BUSY_CODES = frozenset({-1, -2})
BAD_PARAMETER = 10006
MISSING_TOKEN = 10013  # also "offset out of range 10000"
CALL_LIMIT = 14001  # 100 calls per 20 s per interface
APP_TOKEN_EXPIRED = 20005
TOKEN_EXPIRED = 20016
# 11014 参数corpAccessToken不合法 (the global code table,
# https://developer.fxiaoke.com/openapi_v2/start/guide/codes.html): a token the server no
# longer accepts; refreshed like 20016.
TOKEN_INVALID = 11014
CORP_NOT_FOUND = 20017
PERMISSION_CODES = frozenset({15003, 20014, 20020, 20021, 20022, 20023})
DAILY_QUOTA = 30002
NO_QUOTA = 30003
PER_SECOND_LIMIT = 30004
SERVICE_ERROR = 50009

CALLS_PER_WINDOW = 100  # §6: per interface
WINDOW_SECONDS = 20.0

TENANT_TZ = ZoneInfo("Asia/Shanghai")  # §3: close_date is a day at 00:00 +08:00
# §3: outcomes come from describe's labels, which follow the tenant's language: simplified
# Chinese, traditional Chinese (the real record in §3 shows 贏單) or English. Compared
# case-insensitively. 无效 (void) closes without a win.
WON_LABELS = frozenset({"赢单", "贏單", "won", "win", "closed won"})
LOST_LABELS = frozenset({"输单", "輸單", "无效", "無效", "lost", "lose", "closed lost",
                         "invalid"})
# life_status (§3: normal and invalid seen; ineffective, under_review, in_change inferred).
# Not live: invalid (作废, voided) and ineffective (未生效: created but never took effect,
# e.g. its creation approval was refused); they become tombstones until they turn normal.
# Live: normal, under_review (审核中: an approval is running on a real record), in_change
# (变更中), and any status not known here.
NOT_LIVE_STATUSES = frozenset({"invalid", "ineffective"})

SALES_STATUS_OPTIONS = (  # §3: only "2" = 赢单 observed; the other codes are a guess
    ("1", "进行中"), ("2", "赢单"), ("3", "输单"), ("4", "无效"),
)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(value: int | float) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def day_ms(day: date) -> int:
    """A calendar day as Fxiaoke sends it: 00:00 in Asia/Shanghai, in ms (§3)."""
    return to_ms(datetime(day.year, day.month, day.day, tzinfo=TENANT_TZ))


def ms_day(value: int | float) -> date:
    """The Asia/Shanghai calendar day of an epoch-ms instant."""
    return from_ms(value).astimezone(TENANT_TZ).date()

# Fields the admin creates, found by label through describe (their API names are generated,
# field_xxxxx__c, and so are select option codes). logical name -> (field type, labels
# accepted, the old fixed API name also accepted). Config goals_fields overrides by API name.
GOAL_OBJECT_FIELDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "period": ("日期 (date)", ("Period", "周期"), "period__c"),
    "period_type": ("单选 (select) with options Month, Quarter, Year",
                    ("Period type", "周期类型"), "period_type__c"),
    "employee": ("人员 (employee)", ("Employee", "员工"), "employee__c"),
    "target": ("金额 (currency)", ("Target", "目标"), "target_amount__c"),
    "metric": ("单选 (select) with options Bookings, Deals won", ("Metric", "指标"),
               "metric__c"),
    "external_id": ("单行文本 (text), unique", ("External ID", "外部ID"), "external_id__c"),
}
