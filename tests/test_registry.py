"""Entry points: every broker loads, and the sections group agrees with what brokers declare."""

from __future__ import annotations

from brokerq.registry import available, broker_class, sections


def test_sections_agree_with_the_brokers() -> None:
    declared: dict[str, list[tuple[bool, str]]] = {}
    for name in available():
        cls = broker_class(name)
        assert cls.name == name
        declared.setdefault(cls.section, []).append((not cls.section_default, name))
    from_entry_points = {k: v for k, v in sections().items() if k != "broker"}
    assert from_entry_points == {s: tuple(n for _, n in sorted(v)) for s, v in declared.items()}
