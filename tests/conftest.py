"""Shared fixtures: the real-service fixtures live in tests/services.py (a pytest plugin)."""

pytest_plugins = ["tests.services"]
