"""Digests: scheduled leaderboard messages to team chats (WeCom, DingTalk, Feishu/Lark,
Slack robots); docs/digests.md. `content` builds a digest from the store, `platforms`
render and sign it for each chat platform, `schedule` says when it is due, `channels`
keeps the destinations (sealed) and the deliveries. Sending is workers/digests.py."""
