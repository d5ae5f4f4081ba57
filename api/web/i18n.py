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
        # goals and operations pages
        "nav.goals": "Goals",
        "nav.operations": "Operations",
        "goals.title": "Goals",
        "goals.span": "Period",
        "goals.span.quarter": "Q{n}: {months}",
        "goals.span.year": "Year: {months}",
        "goals.metric": "Goal",
        "goals.metric.bookings": "Bookings",
        "goals.metric.deals_won": "Deals won",
        "goals.heading": "Goals for {metric}: {span}",
        "goals.help": "One goal per rep and month. Type a target, clear a cell to remove "
                      "its goal, then save. Nothing is saved while any cell is wrong. The "
                      "leaderboard adds up every goal inside its period: a quarter's goal "
                      "and monthly goals count together.",
        "goals.read_only_hint": "Your goals, read only. Your manager sets them.",
        "goals.caption": "Monthly goals per rep, with what is booked so far and attainment",
        "goals.total": "Total",
        "goals.others": "Other goals in the period",
        "goals.delete": "delete",
        "goals.split_total": "Total to split",
        "goals.cell_label": "Goal of {name} for {month}",
        "goals.split_label": "Total of {name} to split into months",
        "goals.actual_title": "So far, and attainment",
        "goals.save": "Save goals",
        "goals.rule": "Split",
        "goals.rule.even": "evenly",
        "goals.rule.last-year": "like last year's bookings",
        "goals.split": "Split into months",
        "goals.split_help": "Splitting fills the months of each row with a total in; "
                            "check them, then save. Evenly: the same amount each month "
                            "(rounded down to the cent), the rest on the last month. Like "
                            "last year's bookings: in proportion to the rep's bookings in "
                            "the same months a year earlier (evenly when there were none).",
        "goals.split_done": "{n} row(s) split into months. Nothing is saved yet: check "
                            "the months, then save.",
        "goals.split_bad": "{n} total(s) to split are not valid targets.",
        "goals.nobody": "Nobody to set goals for.",
        "goals.month": "Month",
        "goals.saved": "Saved: {n} goal(s) changed.",
        "goals.not_saved": "Nothing was saved: {n} cell(s) need fixing.",
        "goals.conflict": "Someone changed these goals at the same time. Reload the page and "
                          "try again.",
        "goals.read_only": "Only managers and admins change goals.",
        "goals.bad_span": "Choose a quarter or a year from the list.",
        "goals.bad_metric": "There is no such kind of goal.",
        "goals.problem.not_number": "Not a number.",
        "goals.problem.not_positive": "Must be more than zero.",
        "goals.problem.too_large": "Must be below 10,000,000,000,000.",
        "goals.problem.not_whole": "A number of deals is a whole number.",
        "goals.problem.too_precise": "At most 2 decimal places.",
        "goals.problem.other": "Not saved: {detail}",
        "goals.import.title": "Import a sheet",
        "goals.import.help": "A CSV or Excel (.xlsx) file with the columns owner_email or "
                             "person_id, metric, period_start, period_end, target (currency "
                             "optional), as for crmsync goals import. Every row is checked "
                             "first: one bad row and nothing is imported.",
        "goals.import.file": "File",
        "goals.import.submit": "Import",
        "goals.import.no_file": "Choose a file to import.",
        "goals.import.too_large": "The file is over {mb} MB.",
        "goals.import.invalid": "Nothing was imported: {n} line(s) of the file are wrong.",
        "goals.import.errors": "The lines of the file that are wrong",
        "goals.import.line": "Line",
        "goals.import.field": "Column",
        "goals.import.message": "What is wrong",
        "goals.imported": "Imported: {created} new, {updated} changed, {unchanged} "
                          "unchanged.",
        "goals.push.title": "Push to the CRMs",
        "goals.push.submit": "Push goals to the CRMs",
        "goals.push.help": "Sends new and changed goals to every CRM connection.",
        "goals.push.caption": "Each goal's state in each CRM",
        "goals.push.status.pushed": "pushed",
        "goals.push.status.pending": "pending",
        "goals.push.status.failed": "failed",
        "goals.push.status.skipped": "not sent",
        "goals.push.status.unsupported": "not supported",
        "goals.push.none": "No goals in this period yet.",
        "goals.push.no_connections": "No CRM connections to push to.",
        "goals.pushed": "Pushed: {n} result(s); see each goal's state below.",
        "goals.push_waiting": "No worker finished the push in time; it stays queued. Check "
                              "that crmsync worker runs, then reload this page.",
        "ops.title": "Operations",
        "ops.admins_only": "Only admins see the operations page.",
        "ops.times_in": "Times in {zone}.",
        "ops.connections": "Connections",
        "ops.connection": "Connection",
        "ops.provider": "CRM",
        "ops.status": "Status",
        "ops.status.active": "active",
        "ops.status.needs_reauth": "needs new credentials",
        "ops.status.error": "error",
        "ops.last_sync": "Last sync",
        "ops.records": "Records",
        "ops.next_sync": "Next sync",
        "ops.last_error": "Last error",
        "ops.sync_now": "Sync now",
        "ops.sync_now_of": "Sync {name} now",
        "ops.sync_queued": "Sync run {run} is queued; it shows below.",
        "ops.due_now": "due now",
        "ops.waiting_for_admin": "waits for an admin",
        "ops.no_connections": "No connections yet.",
        "ops.runs": "Recent sync runs",
        "ops.run": "Run",
        "ops.mode": "Kind",
        "ops.mode.full": "full",
        "ops.mode.incremental": "incremental",
        "ops.mode.webhook": "webhook",
        "ops.run.queued": "queued",
        "ops.run.running": "running",
        "ops.run.succeeded": "succeeded",
        "ops.run.failed": "failed",
        "ops.started": "Started",
        "ops.finished": "Finished",
        "ops.error": "Error",
        "ops.no_runs": "No sync has run yet.",
        "ops.webhooks": "Webhook health",
        "ops.webhooks_help": "Callbacks from the CRMs in the last 24 hours: accepted "
                             "(stored), rejected (not verified, or replays) and failed "
                             "(processing gave up).",
        "ops.last_received": "Last received",
        "ops.accepted": "Accepted",
        "ops.rejected": "Rejected",
        "ops.failed": "Failed",
        "ops.channel_expiry": "Channel expires",
        "ops.no_channels": "none yet (CRMSYNC_PUBLIC_URL set?)",
        "ops.last_rejection": "Last rejection",
        "ops.keys": "API keys",
        "ops.key_name": "Name",
        "ops.prefix": "Key starts",
        "ops.scopes": "Scopes",
        "ops.scope.read": "read",
        "ops.scope.write": "write",
        "ops.scope.push": "push",
        "ops.scope.admin": "admin",
        "ops.created": "Created",
        "ops.last_used": "Last used",
        "ops.revoked": "Revoked",
        "ops.revoke": "Revoke",
        "ops.revoke_of": "Revoke the key {name}",
        "ops.create_key": "Create a key",
        "ops.key_created": "Key {name} is created.",
        "ops.key_once": "Copy the key now: it is shown only this once.",
        "ops.key_revoked": "Key {id} is revoked.",
        "ops.key_bad_name": "Give the key a name of 1 to {n} characters.",
        "ops.key_bad_scopes": "Choose at least one scope.",
        "ops.no_keys": "No API keys yet.",
        # trends and pipeline pages
        "nav.trends": "Trends",
        "nav.pipeline": "Pipeline",
        "deal.open_in_crm": "Open this deal in its CRM (a new tab)",
        "focus.label": "Show",
        "focus.everyone": "Everyone",
        "trends.title": "Trends",
        "trends.heading": "Trends of {who}: {range}",
        "trends.interval": "By",
        "trends.by_month": "Month",
        "trends.by_quarter": "Quarter",
        "trends.cumulative": "Cumulative",
        "trends.quarter": "Q{n} {year}",
        "trends.bad_interval": "Trends are shown by month or by quarter.",
        "trends.bookings_chart": "Bookings and goal per period",
        "trends.cumulative_chart": "Bookings and goal, cumulative since the first period",
        "trends.win_chart": "Win rate per period (won / (won + lost))",
        "trends.caption": "Bookings, goal, attainment and win rate per period, and running "
                          "totals",
        "trends.period": "Period",
        "trends.total_bookings": "Bookings so far",
        "trends.total_goal": "Goal so far",
        "trends.total_attainment": "Attainment so far",
        "trends.how": "The first and last periods count only the days inside the range. A "
                      "period's goal is the sum of the goals that lie inside it: a quarter's "
                      "goal shows in the quarter, not in its months. \"So far\" adds up the "
                      "rows from the first one down; attainment so far is shown while every "
                      "period so far has a goal.",
        "pipeline.title": "Pipeline",
        "pipeline.heading": "Pipeline of {who}",
        "pipeline.forecast_heading": "Forecast against the goal, {range}",
        "pipeline.coverage": "Forecast / goal",
        "pipeline.funnel_heading": "Open deals now, by stage",
        "pipeline.funnel_hint": "Every open deal whatever its close date, in the CRM's stage "
                                "order; weighted = amount × the deal's probability.",
        "pipeline.funnel_of": "Open deals of {name} by stage",
        "pipeline.count": "Deals",
        "pipeline.amount": "Amount",
        "pipeline.weighted": "Weighted",
        "pipeline.no_stage": "(no stage)",
        "pipeline.no_open": "No open deals.",
        "pipeline.closing_heading": "Open deals closing {range}",
        "pipeline.closing_title": "Open deals closing in the period",
        "pipeline.probability": "Probability (%)",
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
        # goals and operations pages
        "nav.goals": "目标",
        "nav.operations": "运维",
        "goals.title": "目标",
        "goals.span": "期间",
        "goals.span.quarter": "第{n}季度：{months}",
        "goals.span.year": "全年：{months}",
        "goals.metric": "目标类型",
        "goals.metric.bookings": "成交额",
        "goals.metric.deals_won": "赢单数",
        "goals.heading": "{metric}目标：{span}",
        "goals.help": "每位销售每月一个目标。输入目标值，清空单元格即删除该目标，然后保存。"
                      "只要有一个单元格有误，就不会保存任何内容。排行榜会累加期间内的所有目标："
                      "季度目标与月度目标一并计算。",
        "goals.read_only_hint": "您的目标（只读），由您的经理设置。",
        "goals.caption": "各销售的月度目标，以及目前的成交额和达成率",
        "goals.total": "合计",
        "goals.others": "期间内的其他目标",
        "goals.delete": "删除",
        "goals.split_total": "待拆分总额",
        "goals.cell_label": "{name}在{month}的目标",
        "goals.split_label": "{name}待拆分到各月的总额",
        "goals.actual_title": "目前完成及达成率",
        "goals.save": "保存目标",
        "goals.rule": "拆分方式",
        "goals.rule.even": "平均拆分",
        "goals.rule.last-year": "按去年同期成交额",
        "goals.split": "拆分到各月",
        "goals.split_help": "拆分会为填写了总额的行填入各月目标；请检查后再保存。平均拆分："
                            "每月金额相同（向下取整到分），余数计入最后一个月。按去年同期成交额："
                            "按该销售去年同月成交额的比例拆分（去年没有成交时平均拆分）。",
        "goals.split_done": "已将 {n} 行拆分到各月，尚未保存：请检查各月目标后保存。",
        "goals.split_bad": "有 {n} 个待拆分总额不是有效的目标值。",
        "goals.nobody": "没有可设置目标的人员。",
        "goals.month": "月份",
        "goals.saved": "已保存：修改了 {n} 个目标。",
        "goals.not_saved": "未保存任何内容：有 {n} 个单元格需要修改。",
        "goals.conflict": "有人同时修改了这些目标，请刷新页面后重试。",
        "goals.read_only": "只有经理和管理员可以修改目标。",
        "goals.bad_span": "请从列表中选择一个季度或年度。",
        "goals.bad_metric": "没有这种目标类型。",
        "goals.problem.not_number": "不是数字。",
        "goals.problem.not_positive": "必须大于零。",
        "goals.problem.too_large": "必须小于 10,000,000,000,000。",
        "goals.problem.not_whole": "赢单数必须是整数。",
        "goals.problem.too_precise": "最多两位小数。",
        "goals.problem.other": "未保存：{detail}",
        "goals.import.title": "导入表格",
        "goals.import.help": "CSV 或 Excel（.xlsx）文件，列为 owner_email 或 person_id、metric、"
                             "period_start、period_end、target（currency 可选），与 crmsync goals "
                             "import 相同。所有行会先检查：只要有一行有误，就不导入任何内容。",
        "goals.import.file": "文件",
        "goals.import.submit": "导入",
        "goals.import.no_file": "请选择要导入的文件。",
        "goals.import.too_large": "文件超过 {mb} MB。",
        "goals.import.invalid": "未导入任何内容：文件中有 {n} 行有误。",
        "goals.import.errors": "文件中有误的行",
        "goals.import.line": "行号",
        "goals.import.field": "列",
        "goals.import.message": "错误原因",
        "goals.imported": "已导入：新增 {created} 个，修改 {updated} 个，未变 {unchanged} 个。",
        "goals.push.title": "推送到 CRM",
        "goals.push.submit": "将目标推送到 CRM",
        "goals.push.help": "将新增和修改过的目标发送到每个 CRM 连接。",
        "goals.push.caption": "各目标在各 CRM 中的状态",
        "goals.push.status.pushed": "已推送",
        "goals.push.status.pending": "待推送",
        "goals.push.status.failed": "失败",
        "goals.push.status.skipped": "未发送",
        "goals.push.status.unsupported": "不支持",
        "goals.push.none": "此期间还没有目标。",
        "goals.push.no_connections": "没有可推送的 CRM 连接。",
        "goals.pushed": "已推送：共 {n} 条结果，各目标的状态见下表。",
        "goals.push_waiting": "没有 worker 及时完成推送，任务仍在队列中。请确认 crmsync worker "
                              "正在运行，然后刷新此页面。",
        "ops.title": "运维",
        "ops.admins_only": "只有管理员可以查看运维页面。",
        "ops.times_in": "时间按 {zone} 时区显示。",
        "ops.connections": "连接",
        "ops.connection": "连接",
        "ops.provider": "CRM",
        "ops.status": "状态",
        "ops.status.active": "正常",
        "ops.status.needs_reauth": "需要重新授权",
        "ops.status.error": "出错",
        "ops.last_sync": "上次同步",
        "ops.records": "记录数",
        "ops.next_sync": "下次同步",
        "ops.last_error": "最近错误",
        "ops.sync_now": "立即同步",
        "ops.sync_now_of": "立即同步 {name}",
        "ops.sync_queued": "同步任务 {run} 已加入队列，见下表。",
        "ops.due_now": "即将同步",
        "ops.waiting_for_admin": "等待管理员处理",
        "ops.no_connections": "还没有连接。",
        "ops.runs": "最近的同步任务",
        "ops.run": "任务",
        "ops.mode": "类型",
        "ops.mode.full": "全量",
        "ops.mode.incremental": "增量",
        "ops.mode.webhook": "Webhook",
        "ops.run.queued": "排队中",
        "ops.run.running": "运行中",
        "ops.run.succeeded": "成功",
        "ops.run.failed": "失败",
        "ops.started": "开始时间",
        "ops.finished": "结束时间",
        "ops.error": "错误",
        "ops.no_runs": "还没有运行过同步。",
        "ops.webhooks": "Webhook 健康状况",
        "ops.webhooks_help": "最近 24 小时内来自 CRM 的回调：已接受（已存储）、"
                             "已拒绝（未通过验证或重放）和失败（处理放弃）。",
        "ops.last_received": "最近接收",
        "ops.accepted": "已接受",
        "ops.rejected": "已拒绝",
        "ops.failed": "失败",
        "ops.channel_expiry": "通知通道到期",
        "ops.no_channels": "尚无（是否设置了 CRMSYNC_PUBLIC_URL？）",
        "ops.last_rejection": "最近一次拒绝",
        "ops.keys": "API 密钥",
        "ops.key_name": "名称",
        "ops.prefix": "密钥开头",
        "ops.scopes": "权限范围",
        "ops.scope.read": "读取",
        "ops.scope.write": "写入",
        "ops.scope.push": "推送",
        "ops.scope.admin": "管理",
        "ops.created": "创建时间",
        "ops.last_used": "最近使用",
        "ops.revoked": "已吊销",
        "ops.revoke": "吊销",
        "ops.revoke_of": "吊销密钥 {name}",
        "ops.create_key": "创建密钥",
        "ops.key_created": "密钥 {name} 已创建。",
        "ops.key_once": "请立即复制此密钥：它只显示这一次。",
        "ops.key_revoked": "密钥 {id} 已吊销。",
        "ops.key_bad_name": "请为密钥起一个 1 到 {n} 个字符的名称。",
        "ops.key_bad_scopes": "请至少选择一个权限范围。",
        "ops.no_keys": "还没有 API 密钥。",
        # trends and pipeline pages
        "nav.trends": "趋势",
        "nav.pipeline": "商机管道",
        "deal.open_in_crm": "在 CRM 中打开此商机（新标签页）",
        "focus.label": "查看",
        "focus.everyone": "全部人员",
        "trends.title": "趋势",
        "trends.heading": "{who}的趋势：{range}",
        "trends.interval": "按",
        "trends.by_month": "月",
        "trends.by_quarter": "季度",
        "trends.cumulative": "累计",
        "trends.quarter": "{year}年第{n}季度",
        "trends.bad_interval": "趋势只能按月或按季度显示。",
        "trends.bookings_chart": "各期成交额与目标",
        "trends.cumulative_chart": "自第一期起累计的成交额与目标",
        "trends.win_chart": "各期赢单率（赢单 / (赢单 + 输单)）",
        "trends.caption": "各期成交额、目标、达成率和赢单率，以及累计值",
        "trends.period": "期间",
        "trends.total_bookings": "累计成交额",
        "trends.total_goal": "累计目标",
        "trends.total_attainment": "累计达成率",
        "trends.how": "第一期和最后一期只计算范围内的日期。每期的目标是完全落在该期内的目标之和："
                      "季度目标显示在季度中，而不在其各月中。“累计”从第一行起逐行相加；"
                      "只有当此前每一期都有目标时才显示累计达成率。",
        "pipeline.title": "商机管道",
        "pipeline.heading": "{who}的商机管道",
        "pipeline.forecast_heading": "预测与目标对比，{range}",
        "pipeline.coverage": "预测 / 目标",
        "pipeline.funnel_heading": "当前在途商机（按阶段）",
        "pipeline.funnel_hint": "所有在途商机（不论预计成交日期），按 CRM 的阶段顺序排列；"
                                "加权金额 = 金额 × 商机的赢率。",
        "pipeline.funnel_of": "{name}的在途商机（按阶段）",
        "pipeline.count": "商机数",
        "pipeline.amount": "金额",
        "pipeline.weighted": "加权金额",
        "pipeline.no_stage": "（无阶段）",
        "pipeline.no_open": "没有在途商机。",
        "pipeline.closing_heading": "预计在{range}成交的在途商机",
        "pipeline.closing_title": "本期预计成交的在途商机",
        "pipeline.probability": "赢率（%）",
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
