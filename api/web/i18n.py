"""The dashboard's languages: every text it shows, in English and Simplified Chinese, and
numbers, money, percentages and dates formatted for the language (Babel, CLDR data).

Templates call t("key", name=value) (a message with str.format fields); the web code
calls text(lang, "key", ...). tests/unit/test_dashboard_i18n.py fails when a key used in
a template or in the web code is missing in a language, or when the languages' keys
differ.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "lang"
LOCALES = {"en": Locale.parse("en_US"), "zh": Locale.parse("zh_Hans_CN")}
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
NOTHING = "–"  # a number that does not exist (a win rate without closed deals)

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "crmsync dashboard",
        "lang.switch": "中文",
        "lang.switch_label": "Switch the language to Chinese",
        "nav.leaderboard": "Leaderboard",
        "nav.signed_in_as": "Signed in as {name}",
        "nav.sign_out": "Sign out",
        "role.admin": "admin",
        "role.manager": "manager",
        "role.rep": "rep",
        "login.title": "Sign in",
        "login.email": "Email",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.wrong": "Wrong email or password.",
        "login.throttled_seconds": "Too many failed sign-ins. Try again in {n} seconds.",
        "login.throttled_minutes": "Too many failed sign-ins. Try again in {n} minutes.",
        "login.no_password": "No password yet? Ask an admin for a one-time link.",
        "login.signed_out": "You are signed out.",
        "welcome.title": "Set your password",
        "welcome.intro": "Welcome, {email}. Choose a password of at least {n} characters.",
        "welcome.password": "New password",
        "welcome.confirm": "The password again",
        "welcome.submit": "Set the password and sign in",
        "welcome.mismatch": "The two passwords differ.",
        "welcome.too_short": "A password needs at least {n} characters.",
        "welcome.too_long": "A password has at most {n} characters.",
        "welcome.dead": "This link has expired or has been used. Ask an admin for a new one.",
        "error.not_found.title": "Not found",
        "error.not_found": "There is nothing here, or it is not yours to see.",
        "error.refused.title": "Refused",
        "error.csrf": "The form had expired. Go back, reload the page and try again.",
        "error.bad_request.title": "Cannot show this",
        "error.bad_dates": "Give the start and the end of the period as dates "
                           "(the start not after the end, at most 10 years).",
        "error.bad_sort": "The leaderboard cannot be sorted that way.",
        "error.bad_metric": "There is no such number to list deals for.",
        "error.bad_page": "That page of the list does not exist; start from the first.",
        "error.missing_rate": "An exchange rate is missing, so amounts cannot be added up: "
                              "{detail}",
        "error.back": "Back to the leaderboard",
        "period.label": "Period",
        "period.this-month": "This month",
        "period.last-month": "Last month",
        "period.this-quarter": "This quarter",
        "period.last-quarter": "Last quarter",
        "period.this-year": "This year",
        "period.last-year": "Last year",
        "period.custom": "Custom",
        "period.start": "From",
        "period.end": "To",
        "period.show": "Show",
        "period.range": "{start} to {end}",
        "board.title": "Leaderboard",
        "board.heading": "Leaderboard: {range}",
        "board.currency": "Amounts in {currency}.",
        "board.caption": "Bookings, goals and pipeline per rep, with team subtotals",
        "board.team": "Team {team}",
        "board.no_team": "No team",
        "board.total": "Total",
        "board.no_owner": "(no owner)",
        "board.empty": "Nobody to show for this period.",
        "board.sort": "Sort by {column}",
        "board.deals_of": "The deals behind {metric} of {name}",
        "col.rep": "Rep",
        "col.bookings": "Bookings",
        "col.goal": "Goal",
        "col.attainment": "Attainment",
        "col.win_rate": "Win rate",
        "col.open_pipeline": "Open pipeline",
        "col.sales_cycle_days": "Sales cycle (days)",
        "metric.bookings": "Bookings",
        "metric.deals_won": "Deals won",
        "metric.deals_lost": "Deals lost",
        "metric.win_rate": "Win rate",
        "metric.avg_deal_size": "Average deal size",
        "metric.sales_cycle_days": "Sales cycle",
        "metric.open_pipeline": "Open pipeline",
        "metric.weighted_pipeline": "Weighted pipeline",
        "metric.forecast": "Forecast",
        "deals.title": "Deals",
        "deals.heading": "{metric}: {who}",
        "deals.everyone": "everyone",
        "deals.period": "Deals closing {range}.",
        "deals.amounts": "Amounts as in the CRM, and in the connection's home currency "
                         "(the leaderboard converts these).",
        "deals.name": "Deal",
        "deals.account": "Account",
        "deals.amount": "Amount",
        "deals.currency": "Currency",
        "deals.amount_home": "In home currency",
        "deals.close_date": "Close date",
        "deals.stage": "Stage",
        "deals.connection": "CRM connection",
        "deals.none": "No deals.",
        "deals.first": "First page",
        "deals.next": "Next page",
        "deals.back": "Back to the leaderboard",
        # statements page
        "nav.statements": "Statements",
        "stmt.title": "Commission statements",
        "stmt.period": "Period",
        "stmt.show": "Show",
        "stmt.period_hint": "2027-01 (a month), 2027-Q1 (a quarter) or 2027 (a year)",
        "stmt.bad_period": "Give the period as 2027-01, 2027-Q1 or 2027.",
        "stmt.range": "{period}: {range}.",
        "stmt.none": "No statements for this period: no plan of this period is in effect "
                     "for the people you see.",
        "stmt.export": "Download:",
        "stmt.team": "Statements of the period",
        "stmt.rep": "Rep",
        "stmt.plan": "Plan",
        "stmt.measure": "Bookings credited",
        "stmt.attainment": "Attainment",
        "stmt.earned": "Earned",
        "stmt.payout": "Payout",
        "stmt.locked": "locked",
        "stmt.total": "Total ({currency})",
        "stmt.pick": "Choose a rep to see their statement line by line.",
        "stmt.of": "{name}: {plan} (version {version})",
        "stmt.quota": "Quota",
        "stmt.draw_balance": "Draw balance owed",
        "stmt.no_quota": "No quota for this period: tiered deal lines pay nothing until "
                         "there is a bookings goal for exactly this period.",
        "stmt.lines": "Lines of the statement",
        "stmt.line": "Line",
        "stmt.deal": "Deal",
        "stmt.close_date": "Close date",
        "stmt.amount": "Amount",
        "stmt.why": "How it is paid",
        "stmt.commission": "Commission",
        "stmt.kind_deal": "Deal",
        "stmt.kind_spiff": "SPIFF: {name}",
        "stmt.kind_cap": "Cap",
        "stmt.kind_draw": "Draw",
        "stmt.kind_adjustment": "Adjustment of {period}",
        "stmt.band": "{amount} at {rate} (tier {tier})",
        "stmt.plan_heading": "Plan: {name} (version {version})",
        "stmt.plan_members_team": "Who: team {team}",
        "stmt.plan_members_people": "Who: {people}",
        "stmt.plan_quota_goal": "Quota: each person's bookings goal for the period",
        "stmt.plan_quota": "Quota: {quota}",
        "stmt.plan_tier": "From {start} to {end} of quota: {rate} of bookings",
        "stmt.plan_tier_last": "Above {start} of quota: {rate} of bookings",
        "stmt.plan_cap": "At most {cap} a period from deals and SPIFFs",
        "stmt.plan_spiff": "SPIFF {name}: {amount} per matching deal",
        "stmt.plan_draw": "Draw: at least {amount} a period",
        "stmt.plan_draw_recoverable": "Recoverable draw: at least {amount} a period, paid "
                                      "back from later earnings above it",
        "stmt.plan_clawback": "Decreases after a period is closed are taken back only "
                              "within {days} days of the deal's close date",
        "stmt.if_won": "If you win your open deals of this period",
        "stmt.if_won_commission": "Commission added",
        "stmt.if_won_payout": "Payout added",
        "stmt.if_won_note": "Each deal on its own, won at its amount, with this period's "
                            "tiers, cap and draw.",
    },
    "zh": {
        "app.title": "crmsync 销售看板",
        "lang.switch": "English",
        "lang.switch_label": "将语言切换为英文",
        "nav.leaderboard": "排行榜",
        "nav.signed_in_as": "当前用户：{name}",
        "nav.sign_out": "退出登录",
        "role.admin": "管理员",
        "role.manager": "经理",
        "role.rep": "销售",
        "login.title": "登录",
        "login.email": "邮箱",
        "login.password": "密码",
        "login.submit": "登录",
        "login.wrong": "邮箱或密码错误。",
        "login.throttled_seconds": "登录失败次数过多，请在 {n} 秒后重试。",
        "login.throttled_minutes": "登录失败次数过多，请在 {n} 分钟后重试。",
        "login.no_password": "还没有密码？请向管理员索取一次性链接。",
        "login.signed_out": "您已退出登录。",
        "welcome.title": "设置密码",
        "welcome.intro": "欢迎，{email}。请设置一个至少 {n} 个字符的密码。",
        "welcome.password": "新密码",
        "welcome.confirm": "再次输入密码",
        "welcome.submit": "设置密码并登录",
        "welcome.mismatch": "两次输入的密码不一致。",
        "welcome.too_short": "密码至少需要 {n} 个字符。",
        "welcome.too_long": "密码最多 {n} 个字符。",
        "welcome.dead": "此链接已过期或已被使用，请向管理员索取新链接。",
        "error.not_found.title": "未找到",
        "error.not_found": "这里没有内容，或者您无权查看。",
        "error.refused.title": "请求被拒绝",
        "error.csrf": "表单已失效，请返回并刷新页面后重试。",
        "error.bad_request.title": "无法显示",
        "error.bad_dates": "请以日期形式填写期间的开始和结束（开始不晚于结束，最长 10 年）。",
        "error.bad_sort": "排行榜不能按此方式排序。",
        "error.bad_metric": "没有可以列出商机的此项指标。",
        "error.bad_page": "列表中没有这一页，请从第一页开始。",
        "error.missing_rate": "缺少汇率，无法汇总金额：{detail}",
        "error.back": "返回排行榜",
        "period.label": "期间",
        "period.this-month": "本月",
        "period.last-month": "上月",
        "period.this-quarter": "本季度",
        "period.last-quarter": "上季度",
        "period.this-year": "本年度",
        "period.last-year": "上年度",
        "period.custom": "自定义",
        "period.start": "开始",
        "period.end": "结束",
        "period.show": "查看",
        "period.range": "{start}至{end}",
        "board.title": "排行榜",
        "board.heading": "排行榜：{range}",
        "board.currency": "金额单位：{currency}。",
        "board.caption": "各销售的成交额、目标和商机，含团队小计",
        "board.team": "团队：{team}",
        "board.no_team": "未分组",
        "board.total": "合计",
        "board.no_owner": "（无负责人）",
        "board.empty": "此期间没有可显示的人员。",
        "board.sort": "按{column}排序",
        "board.deals_of": "{name}的{metric}对应的商机",
        "col.rep": "销售",
        "col.bookings": "成交额",
        "col.goal": "目标",
        "col.attainment": "达成率",
        "col.win_rate": "赢单率",
        "col.open_pipeline": "在途商机",
        "col.sales_cycle_days": "销售周期（天）",
        "metric.bookings": "成交额",
        "metric.deals_won": "赢单数",
        "metric.deals_lost": "输单数",
        "metric.win_rate": "赢单率",
        "metric.avg_deal_size": "平均成交金额",
        "metric.sales_cycle_days": "销售周期",
        "metric.open_pipeline": "在途商机",
        "metric.weighted_pipeline": "加权商机",
        "metric.forecast": "预测",
        "deals.title": "商机",
        "deals.heading": "{metric}：{who}",
        "deals.everyone": "全部人员",
        "deals.period": "成交日期在{range}的商机。",
        "deals.amounts": "金额为 CRM 中的原始金额，以及该连接本位币的金额（排行榜据此换算）。",
        "deals.name": "商机",
        "deals.account": "客户",
        "deals.amount": "金额",
        "deals.currency": "币种",
        "deals.amount_home": "本位币金额",
        "deals.close_date": "成交日期",
        "deals.stage": "阶段",
        "deals.connection": "CRM 连接",
        "deals.none": "没有商机。",
        "deals.first": "第一页",
        "deals.next": "下一页",
        "deals.back": "返回排行榜",
        # statements page
        "nav.statements": "提成明细",
        "stmt.title": "提成明细",
        "stmt.period": "期间",
        "stmt.show": "查看",
        "stmt.period_hint": "2027-01（月）、2027-Q1（季度）或 2027（年）",
        "stmt.bad_period": "请按 2027-01、2027-Q1 或 2027 的格式填写期间。",
        "stmt.range": "{period}：{range}。",
        "stmt.none": "该期间没有提成明细：你可查看的人员在该期间没有生效的提成方案。",
        "stmt.export": "下载：",
        "stmt.team": "本期提成明细",
        "stmt.rep": "销售",
        "stmt.plan": "方案",
        "stmt.measure": "计入的成交额",
        "stmt.attainment": "达成率",
        "stmt.earned": "应得提成",
        "stmt.payout": "实发金额",
        "stmt.locked": "已结算",
        "stmt.total": "合计（{currency}）",
        "stmt.pick": "选择一位销售，查看其逐笔提成明细。",
        "stmt.of": "{name}：{plan}（第 {version} 版）",
        "stmt.quota": "指标",
        "stmt.draw_balance": "待扣回的保底预支",
        "stmt.no_quota": "本期没有指标：在设定恰好对应本期的成交额目标之前，分档的商机提成为零。",
        "stmt.lines": "提成明细行",
        "stmt.line": "项目",
        "stmt.deal": "商机",
        "stmt.close_date": "成交日期",
        "stmt.amount": "金额",
        "stmt.why": "计算方式",
        "stmt.commission": "提成",
        "stmt.kind_deal": "商机",
        "stmt.kind_spiff": "专项奖励：{name}",
        "stmt.kind_cap": "封顶",
        "stmt.kind_draw": "保底",
        "stmt.kind_adjustment": "{period} 的调整",
        "stmt.band": "{amount} 按 {rate}（第 {tier} 档）",
        "stmt.plan_heading": "方案：{name}（第 {version} 版）",
        "stmt.plan_members_team": "适用人员：{team} 团队",
        "stmt.plan_members_people": "适用人员：{people}",
        "stmt.plan_quota_goal": "指标：每人本期的成交额目标",
        "stmt.plan_quota": "指标：{quota}",
        "stmt.plan_tier": "指标的 {start} 至 {end}：成交额的 {rate}",
        "stmt.plan_tier_last": "超过指标的 {start}：成交额的 {rate}",
        "stmt.plan_cap": "每期商机和专项奖励提成最多 {cap}",
        "stmt.plan_spiff": "专项奖励 {name}：每笔符合条件的商机 {amount}",
        "stmt.plan_draw": "保底：每期至少 {amount}",
        "stmt.plan_draw_recoverable": "可扣回保底：每期至少 {amount}，之后从超出部分扣回",
        "stmt.plan_clawback": "结算后的减少仅在商机成交后 {days} 天内扣回",
        "stmt.if_won": "如果赢下本期的在途商机",
        "stmt.if_won_commission": "增加的提成",
        "stmt.if_won_payout": "增加的实发",
        "stmt.if_won_note": "每笔商机单独计算：按其金额赢单，适用本期的分档、封顶和保底。",
    },
}


def text(lang: str, key: str, **values: Any) -> str:
    """The message `key` in `lang`, its {fields} filled in."""
    message = MESSAGES[lang][key]
    return message.format(**values) if values else message


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The `lang` cookie when it names a language, else the browser's first choice among
    the Accept-Language entries (any zh* is Chinese), else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    choices: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "")[:500].split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in ("zh", "en") and quality > 0:
            choices.append((-quality, index, primary))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Formats:
    """Numbers, money, percentages and dates as the language writes them. Amounts are
    shown with every digit they have (never rounded here)."""

    lang: str

    @property
    def locale(self) -> Locale:
        return LOCALES[self.lang]

    def money(self, value: Decimal | None, currency: str | None) -> str:
        if value is None:
            return NOTHING
        if not currency:
            return self.number(value)
        return format_currency(value, currency, locale=self.locale, decimal_quantization=False)

    def number(self, value: Decimal | int | None) -> str:
        if value is None:
            return NOTHING
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal | None) -> str:
        """A ratio (0.6667) as a percentage with its 2 decimals (66.67%)."""
        if value is None:
            return NOTHING
        return format_percent(value, "#,##0.00%", locale=self.locale)

    def day(self, value: date | None) -> str:
        return NOTHING if value is None else format_date(value, "medium", locale=self.locale)

    def range(self, start: date, end: date) -> str:
        return text(self.lang, "period.range", start=self.day(start), end=self.day(end))


__all__ = ["LANGUAGES", "LANG_COOKIE", "MESSAGES", "Formats", "pick_language", "text"]
