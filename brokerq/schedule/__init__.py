"""Periodic jobs that fire exactly once per tick, whatever the number of schedulers.

``Schedule`` says when (cron in a time zone, or every N on UTC time) and what (value, key,
headers); ``Scheduler`` fires schedules into a broker through the broker's ``FireStore``,
which enqueues each deterministic fire id at most once and keeps the last fire.
"""

from brokerq.headers import FIRE_TIME, SCHEDULE
from brokerq.schedule.plan import Missed
from brokerq.schedule.scheduler import Scheduler, message_for
from brokerq.schedule.spec import Schedule, fire_time_text, parse_fire_time
from brokerq.schedule.store import FireStore, fire_id

__all__ = [
    "FIRE_TIME",
    "SCHEDULE",
    "FireStore",
    "Missed",
    "Schedule",
    "Scheduler",
    "fire_id",
    "fire_time_text",
    "message_for",
    "parse_fire_time",
]
