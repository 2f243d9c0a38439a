"""The day partitions of the incremental marts: UTC days of event time (a Tweet's created_at)."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

# The day of the first Tweet ever posted: replayed archives may reach that far back, and a day
# without data costs nothing until someone materializes it.
FIRST_DAY = "2006-03-21"

# end_offset=1 includes today, which is still filling: the hourly schedule rebuilds it.
daily_partitions = DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
