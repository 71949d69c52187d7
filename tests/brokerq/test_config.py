"""Every config error path names the file, the key path and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerq.config import load, loads
from brokerq.errors import ConfigError

GOOD = """\
name: demo
embedded:
  path: ./demo.db
  queue: default
  visibility_timeout: 30s
handler: json:dumps
concurrency: 4
retry: {max_attempts: 5, backoff: 500ms, max_backoff: 5m}
shutdown_timeout: 10s
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "worker.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(p)
    message = str(info.value)
    assert str(p) in message, message
    return message.replace(str(p), "FILE")


def test_good_config_loads_with_durations(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert cfg.name == "demo"
    assert cfg.broker_name == "sqlite"
    assert cfg.concurrency == 4
    assert cfg.retry is not None
    assert cfg.retry.backoff == 0.5
    assert cfg.retry.max_backoff == 300.0
    assert cfg.shutdown_timeout == 10.0
    assert cfg.broker_config.visibility_timeout == 30.0  # type: ignore[attr-defined]


def test_memory_backend_is_chosen_by_embedded_backend(tmp_path: Path) -> None:
    cfg = loads("embedded: {backend: memory}\nhandler: json:dumps\n")
    assert cfg.broker_name == "memory"


def test_env_interpolation_with_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BQ_DB", str(tmp_path / "x.db"))
    monkeypatch.delenv("BQ_CONC", raising=False)
    cfg = loads("embedded: {path: '${BQ_DB}'}\nhandler: json:dumps\nconcurrency: ${BQ_CONC:-7}\n")
    assert cfg.broker_config.path == str(tmp_path / "x.db")  # type: ignore[attr-defined]
    assert cfg.concurrency == 7


def test_missing_env_var_names_it_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BQ_NOPE", raising=False)
    msg = error_of(tmp_path, "handler: json:dumps\nembedded:\n  path: ${BQ_NOPE}\n")
    assert msg == (
        "FILE:3: embedded.path: environment variable BQ_NOPE is not set"
        " (use ${BQ_NOPE:-default} for a default)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "handler: json:dumps\nembedded: {path: ${BQ_NOPE}}\n",  # flow mapping
        "handler: json:dumps\nembedded: {path: ${BQ_NOPE:-a,b}/${BQ_NOPE}}\n",
        "handler: json:dumps\nembedded: {path: x}\nmiddleware: [${BQ_NOPE}]\n",  # flow sequence
    ],
)
def test_unset_env_var_in_flow_style_is_named_not_malformed(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BQ_NOPE", raising=False)
    msg = error_of(tmp_path, text)
    assert "environment variable BQ_NOPE is not set" in msg, msg
    assert msg.startswith(f"FILE:{text.count(chr(10), 0, text.index('${')) + 1}:"), msg


def test_env_var_in_flow_style_reads_as_in_block_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BQ_DB", str(tmp_path / "x.db"))
    monkeypatch.delenv("BQ_NOPE", raising=False)
    flow = loads("embedded: {path: ${BQ_DB}, backend: ${BQ_NOPE:-sqlite}}\nhandler: json:dumps\n")
    block = loads("embedded:\n  path: ${BQ_DB}\n  backend: sqlite\nhandler: json:dumps\n")
    assert flow.broker_config == block.broker_config
    assert flow.broker_config.path == str(tmp_path / "x.db")  # type: ignore[attr-defined]


def test_malformed_flow_yaml_with_a_var_names_the_real_problem(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "handler: json:dumps\nembedded: {path: ${BQ_DB}, x: [}\n")
    assert msg.startswith("FILE:2: malformed YAML"), msg
    assert "'}'" in msg, msg


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "handler: json:dumps\nembedded: {path: x\nconcurrency: 2\n")
    assert msg.startswith("FILE:3: malformed YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "concurency: 3\n")
    assert msg == "FILE:10: concurency: unknown key"


def test_unknown_key_inside_broker_section(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("  queue: default", "  queue: default\n  colour: red"))
    assert msg == "FILE:5: embedded.colour: unknown key"


def test_wrong_types_name_the_key_and_line(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("concurrency: 4", "concurrency: many"))
    assert msg.startswith("FILE:7: concurrency: Input should be a valid integer")
    msg = error_of(tmp_path, GOOD.replace("backoff: 500ms", "backoff: soon"))
    assert msg.startswith("FILE:8: retry.backoff: invalid duration 'soon'")
    msg = error_of(
        tmp_path, GOOD.replace("visibility_timeout: 30s", "visibility_timeout: 30 parsecs")
    )
    assert msg.startswith("FILE:5: embedded.visibility_timeout: invalid duration")
    msg = error_of(tmp_path, GOOD.replace("concurrency: 4", "concurrency: 0"))
    assert msg.startswith("FILE:7: concurrency: Input should be greater than or equal to 1")


def test_missing_handler(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("handler: json:dumps\n", ""))
    assert msg == (
        "FILE:1: handler: required (module:function), or a handlers: map of job type -> "
        "module:function"
    )


def test_exactly_one_broker_section(tmp_path: Path) -> None:
    none = error_of(tmp_path, "handler: json:dumps\n")
    assert (
        "exactly one broker section of dq, embedded, kq, broker is required (found: none)" in none
    )
    two = error_of(tmp_path, GOOD + "dq: {}\n")
    assert "(found: embedded, dq)" in two


def test_unknown_broker_type(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "handler: json:dumps\nbroker:\n  type: rabbit\n")
    assert msg.startswith("FILE:2: broker: unknown broker 'rabbit'; known:")
    msg = error_of(tmp_path, "handler: json:dumps\nembedded: {backend: postgres}\n")
    assert "embedded.backend: 'postgres' is not one of sqlite, memory" in msg


def test_broker_type_required(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "handler: json:dumps\nbroker: {queue: x}\n")
    assert msg == "FILE:2: broker.type: required (a broker name)"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.yaml")


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        GOOD.replace("concurrency: 4", "concurrency: x").replace("name: demo", "name: [1]"),
    )
    lines = msg.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("FILE:1: name:")
    assert lines[1].startswith("FILE:7: concurrency:")


def test_worker_options_top_level_wins_over_section_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    broker = cfg.build_broker()
    with broker:
        opts = cfg.worker_options(broker)
    assert opts["concurrency"] == 4
    assert opts["shutdown_timeout"] == 10.0
    assert opts["retry"].max_attempts == 5


def test_duplicate_keys_bool_counts_and_insane_backoff_are_errors(tmp_path: Path) -> None:
    assert "key 'concurrency' written twice" in error_of(
        tmp_path, GOOD + "concurrency: 2\nconcurrency: 3\n"
    )
    base = GOOD.replace("concurrency: 4\n", "").replace(
        "retry: {max_attempts: 5, backoff: 500ms, max_backoff: 5m}\n", ""
    )
    assert "concurrency: expected a whole number, not true/false" in error_of(
        tmp_path, base + "concurrency: true\n"
    )
    assert "backoff and max_backoff must be finite" in error_of(
        tmp_path, base + "retry: {backoff: .nan}\n"
    )
    assert "must not be below backoff" in error_of(
        tmp_path, base + "retry: {backoff: 1m, max_backoff: 1s}\n"
    )
