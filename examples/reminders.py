"""Demo handlers: a typed payload validated by pydantic, and a plain one."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from brokerq import Message

logger = logging.getLogger("examples.reminders")


class Reminder(BaseModel):
    to: str
    text: str


def send_reminder(reminder: Reminder) -> None:
    """Handle one reminder; raising here would retry it per the config's retry policy."""
    logger.info("reminder for %s: %s", reminder.to, reminder.text)


def log_message(msg: Message) -> None:
    logger.info("message %s (attempt %d): %r", msg.id, msg.attempt, msg.value)
