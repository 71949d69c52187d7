"""A handler module that fails at import time, as one with a missing setting does."""

import os

SETTING = os.environ["BQ_SETTING_THAT_IS_NOT_SET"]


def handler(msg: object) -> None:
    """Never reached."""
