"""Fxiaoke (纷享销客 / ShareCRM): connector, auth, mapping, callbacks and sandbox."""

from connectors.fxiaoke.connector import FxiaokeConfig, FxiaokeConnector, FxiaokeSecrets

__all__ = ["FxiaokeConfig", "FxiaokeConnector", "FxiaokeSecrets"]
