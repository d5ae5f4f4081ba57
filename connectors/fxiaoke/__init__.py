"""Fxiaoke (纷享销客 / ShareCRM): connector, auth, mapping, callbacks and sandbox."""

from connectors.fxiaoke.client import FxiaokeConfig, FxiaokeSecrets
from connectors.fxiaoke.connector import FxiaokeConnector

__all__ = ["FxiaokeConfig", "FxiaokeConnector", "FxiaokeSecrets"]
