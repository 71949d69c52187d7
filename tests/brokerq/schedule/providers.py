"""``schedules_from`` providers for tests: schedules read from a JSON file named by $BQ_SCHEDULES."""

from __future__ import annotations

import json
import os
from typing import Any


def from_file() -> list[dict[str, Any]]:
    path = os.environ["BQ_SCHEDULES"]
    with open(path) as f:
        data: list[dict[str, Any]] = json.load(f)
    return data
