"""The public surface is curated: every name in ``__all__`` exists and every public name is listed."""

from __future__ import annotations

import importlib
import types

import pytest


@pytest.mark.parametrize(
    "package",
    [
        "brokerq",
        "brokerq.embedded",
        "brokerq.schedule",
        "brokerq.testing",
        "brokerq_kafka",
        "brokerq_beanstalk",
    ],
)
def test_all_is_complete_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public -= {"annotations"}
    assert public <= exported | {"__version__"}, f"unlisted public names: {public - exported}"
