"""The sales metrics: their definitions (definitions.py), the SQL parts they are summed
from (aggregates.py), the monthly and daily rollups (rollups.py), local dates in the
store's time zone (localdates.py) and currency conversion (currency.py)."""
