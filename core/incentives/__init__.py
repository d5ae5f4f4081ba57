"""Commissions (docs/incentives.md): plans as data (plans), the
arithmetic (engine), statements read from the store (statements), periods by label
(calendar) and closing them with adjustments (periods)."""

__all__: list[str] = []
