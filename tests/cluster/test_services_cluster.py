"""``scripts/services`` on the cluster topology: ``status --cluster`` lists every node, and
``kill NAME`` / ``restart NAME`` act on one node (a sentinel: the cheapest to bounce)."""

from __future__ import annotations

import pytest

from tests.services import CLUSTER_NAMES, Services, _run_script

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def states() -> dict[str, str]:
    out = _run_script("status", "--cluster").stdout
    return {line.split()[0]: line.split()[2] for line in out.splitlines() if line.strip()}


def test_status_kill_restart_one_node(sentinels: list[str], services: Services) -> None:
    services.kill("sentinel2")
    after_kill = states()
    assert sorted(after_kill) == sorted(CLUSTER_NAMES)
    assert after_kill["sentinel2"] == "down"
    assert all(s == "up" for n, s in after_kill.items() if n != "sentinel2"), after_kill
    services.restart("sentinel2")
    assert states()["sentinel2"] == "up"
