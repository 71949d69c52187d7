"""Shared fixtures: the real-service fixtures live in tests/services.py (a pytest plugin).

``scripts/test`` runs the suite in two passes: ``-m "not serial"`` on several xdist workers,
then ``-m serial`` alone. A test is serial when it disturbs the others (it kills or restarts a
shared service: any test using the ``services`` fixture is marked here, so a new fault test
cannot forget) or when it measures timing that a loaded machine would spoil (marked
``@pytest.mark.serial`` by hand).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.services"]

# fixtures whose users disturb every other test running at the same time
SERIAL_FIXTURES = frozenset({"services"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERIAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.serial)
