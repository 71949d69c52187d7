"""Shared fixtures: the real-service fixtures live in tests/services.py (a pytest plugin).

``scripts/test`` runs the suite in passes: ``-m "not serial and not cluster"`` on several xdist
workers while ``-m "cluster and not serial"`` (tests/cluster: its fault tests kill only cluster
nodes, which no other test uses) runs beside it in one process, then ``-m serial`` alone. A
test is serial when it disturbs the others (it kills or restarts a shared service of the single
topology: any test outside tests/cluster using the ``services`` fixture is marked here, so a
new fault test cannot forget; a cluster test that kills a single-topology service is marked by
hand) or when it measures timing that a loaded machine would spoil (marked by hand).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.services"]

# fixtures whose users disturb every other test running at the same time
SERIAL_FIXTURES = frozenset({"services"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            continue  # kills cluster nodes only (see the module docstring)
        if SERIAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.serial)
