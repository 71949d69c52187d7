"""Dead letters on Kafka: list / retry / purge through the ``<group>.dlq-admin`` group."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from brokerq.errors import ConfigError
from brokerq_kafka import KafkaBroker
from brokerq_kafka._dlqrefs import decode_done, encode_done
from tests.contract import Recorder, running, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))


def always_fail(msg: Any) -> BaseException:
    return RuntimeError(f"boom {msg.value.decode()}")


def dead_letter_three(broker: KafkaBroker) -> None:
    with broker.producer() as producer:
        for i in range(3):
            producer.push(f"m{i}", key=f"k{i}", headers={"n": str(i)})
        producer.flush(30)
    with running(broker, Recorder(fail=always_fail)):
        assert wait_for(lambda: len(broker.dead_letters()) == 3, timeout=60), "not dead-lettered"


def test_list_retry_one_then_purge(broker: KafkaBroker) -> None:
    dead_letter_three(broker)
    letters = broker.dead_letters()
    assert all(re.fullmatch(r"\d+/\d+", d.ref) for d in letters)
    assert len({d.ref for d in letters}) == 3
    assert all(d.message.attempt == 3 for d in letters)
    assert broker.stats()["dead"] == 3
    # Retry the middle one: the commit cannot move past the first, the metadata remembers it.
    chosen = letters[1]
    assert broker.retry_dead([chosen.ref]) == 1
    left = broker.dead_letters()
    assert sorted(d.ref for d in left) == sorted(d.ref for d in letters if d is not chosen)
    assert broker.stats()["dead"] == 2
    assert broker.retry_dead([chosen.ref]) == 0, "a retried dead letter was requeued twice"

    rec = Recorder()
    with running(broker, rec):
        assert wait_for(lambda: len(rec.seen) >= 1, timeout=60)
        time.sleep(1.0)
    (again,) = rec.seen
    assert again.value == chosen.message.value
    assert again.key == chosen.message.key
    assert again.headers == chosen.message.headers  # user headers only, no brokerq-*
    assert again.id == chosen.message.id
    assert again.attempt == 1

    assert broker.purge_dead() == 2
    assert broker.dead_letters() == []
    assert broker.stats()["dead"] == 0
    assert broker.purge_dead() == 0


def test_retry_all_requeues_everything(broker: KafkaBroker) -> None:
    dead_letter_three(broker)
    assert broker.retry_dead() == 3
    assert broker.dead_letters() == []
    assert broker.retry_dead() == 0
    rec = Recorder()
    with running(broker, rec):
        assert wait_for(lambda: len(rec.seen) >= 3, timeout=60)
    assert sorted(rec.values()) == [b"m0", b"m1", b"m2"]
    assert all(m.attempt == 1 for m in rec.seen)


def test_retry_first_ref_advances_the_commit(broker: KafkaBroker) -> None:
    dead_letter_three(broker)
    letters = broker.dead_letters()
    assert broker.retry_dead([letters[0].ref, "0/999999"]) == 1
    assert [d.ref for d in broker.dead_letters()] == [d.ref for d in letters[1:]]
    # A fresh broker (new admin consumer) sees the same committed state.
    with KafkaBroker(broker.conf) as other:
        assert [d.ref for d in other.dead_letters()] == [d.ref for d in letters[1:]]
        assert other.dead_letters(limit=1)[0].ref == letters[1].ref


def test_bad_ref_is_a_config_error(broker: KafkaBroker) -> None:
    with pytest.raises(ConfigError, match="PARTITION/OFFSET"):
        broker.retry_dead(["t/0/1x"])


def test_done_metadata_round_trip() -> None:
    assert encode_done(set()) == ""
    text = encode_done({3, 4, 5, 9, 11, 12})
    assert text == "brokerq-done:3-5,9,11-12"
    assert decode_done(text) == {3, 4, 5, 9, 11, 12}
    assert decode_done("something else") == set()
    assert decode_done("brokerq-done:x") == set()


def bq(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([BROKERQ, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_list_retry_purge(broker: KafkaBroker, tmp_path: Path) -> None:
    conf = broker.conf
    cfg = tmp_path / "kq.yaml"
    cfg.write_text(
        "name: dlq-cli\n"
        "kq:\n"
        f"  brokers: [{conf.brokers[0]!r}]\n"
        f"  group: {conf.group}\n"
        f"  topic: {conf.topic}\n"
        "  offset: first\n"
        "handler: tests.brokerq.cli_handlers:record\n"
    )
    dead_letter_three(broker)
    listing = bq("dead", str(cfg)).stdout
    assert "3 dead letter(s)" in listing
    assert "RuntimeError: boom m1" in listing
    refs = re.findall(r"^(\d+/\d+)(?:\tid=\S+)?\tattempt=3\t", listing, re.M)
    assert len(refs) == 3
    assert bq("dead", str(cfg), "--retry", "--ref", refs[0]).stdout.strip() == "requeued 1"
    assert "2 dead letter(s)" in bq("dead", str(cfg)).stdout
    assert bq("dead", str(cfg), "--purge").stdout.strip() == "purged 2"
    assert "0 dead letter(s)" in bq("dead", str(cfg)).stdout
    bad = bq("dead", str(cfg), "--retry", "--ref", "nope", check=False)
    assert bad.returncode == 3 and "PARTITION/OFFSET" in bad.stderr


def test_refs_and_message_ids_select_exactly_those(broker: KafkaBroker) -> None:
    """``dead --ref`` by partition/offset or by the message id the logs show; purging some
    refs purges only those (issue 11 #4, #14)."""
    dead_letter_three(broker)
    letters = broker.dead_letters()
    assert all(d.message.id and not re.fullmatch(r"\d+/\d+", d.message.id) for d in letters)
    assert "RuntimeError" in letters[0].error and "boom" in letters[0].traceback
    by_id = broker.dead_letters(refs=[letters[2].message.id])
    assert [d.ref for d in by_id] == [letters[2].ref]
    assert broker.dead_letters(limit=1, refs=[d.ref for d in letters]) == letters[:1]
    assert broker.purge_dead([letters[0].message.id]) == 1
    assert [d.ref for d in broker.dead_letters()] == [d.ref for d in letters[1:]]
    assert broker.purge_dead([letters[1].ref]) == 1
    assert [d.ref for d in broker.dead_letters()] == [letters[2].ref]
    with pytest.raises(ConfigError, match="message id"):
        broker.purge_dead(["no-such-id"])
    assert broker.retry_dead([letters[2].message.id]) == 1
    assert broker.dead_letters() == []
