"""The shared dispatcher: due times, priority, per-key lanes, room, removal, close."""

from __future__ import annotations

import threading
import time

from brokerq.dispatch import Dispatcher


def test_fifo_and_never_early() -> None:
    d: Dispatcher[str] = Dispatcher()
    d.put("later", due=time.time() + 0.3)
    d.put_many(["a", "b"])
    assert d.get_many(10, 0) == ["a", "b"]
    assert d.get(0.05) is None  # not due yet
    t0 = time.time()
    assert d.get(2.0) == "later"
    assert time.time() - t0 >= 0.2
    assert d.counts() == (0, 0)


def test_priority_lower_first_fifo_among_equals() -> None:
    d: Dispatcher[tuple[int, str]] = Dispatcher(priority_of=lambda i: i[0])
    for item in [(100, "x"), (0, "a"), (100, "y"), (0, "b")]:
        d.put(item)
    assert [i[1] for i in d.get_many(10, 0)] == ["a", "b", "x", "y"]
    d.put((100, "z"))
    d.put((5, "back"))
    d.put_front((100, "first"), holds_key=False)  # first among its priority, not above lower
    assert d.get_many(3, 0) == [(5, "back"), (100, "first"), (100, "z")]


def test_key_lanes_keep_order_and_hold_behind_retry() -> None:
    d: Dispatcher[tuple[str, int]] = Dispatcher(key_of=lambda i: i[0])
    d.put_many([("k", 1), ("k", 2), ("j", 1), ("k", 3)])
    first = d.get_many(10, 0)
    assert first == [("k", 1), ("j", 1)]  # k2, k3 wait behind k1
    assert d.counts() == (2, 0)
    # k1 fails and is retried later: its key stays busy, k2 must not overtake
    d.put(("k", 1), due=time.time() + 0.2, holds_key=True)
    assert d.get(0.05) is None
    assert d.get(1.0) == ("k", 1)
    d.done(("k", 1))
    assert d.get(0) == ("k", 2)
    d.done(("k", 2))
    assert d.get(0) == ("k", 3)
    d.done(("k", 3))
    d.done(("j", 1))
    assert len(d) == 0


def test_remove_hands_keys_on() -> None:
    d: Dispatcher[tuple[str, int]] = Dispatcher(key_of=lambda i: i[0])
    d.put_many([("k", 1), ("k", 2)])
    assert d.get(0) == ("k", 1)
    d.put(("k", 1), due=time.time() + 60, holds_key=True)  # retry waiting, holding k
    removed = d.remove(lambda i: i == ("k", 1))
    assert removed == [("k", 1)]
    assert d.get(0) == ("k", 2)


def test_room_and_close_wake_waiters() -> None:
    d: Dispatcher[int] = Dispatcher(capacity=4, low_water=1)
    d.put_many(range(4))
    assert not d.has_room()
    assert d.wait_room(0.05) is False
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(d.wait_room(5)))
    t.start()
    d.get_many(3, 0)
    t.join(5)
    assert got == [True]
    waiter: list[int | None] = []
    d.get_many(10, 0)
    t2 = threading.Thread(target=lambda: waiter.append(d.get(10)))
    t2.start()
    time.sleep(0.05)
    assert d.close() == []
    t2.join(5)
    assert waiter == [None] and d.closed


def test_snapshot_copies_ready_in_hand_out_order_and_delayed_by_due() -> None:
    d: Dispatcher[str] = Dispatcher(priority_of=lambda s: int(s[0]))
    d.put("2b")
    d.put("1a")
    d.put("2c")
    now = time.time()
    d.put("9late", now + 60)
    d.put("9soon", now + 30)
    ready, delayed = d.snapshot()
    assert ready == ["1a", "2b", "2c"]
    assert [item for _, item in delayed] == ["9soon", "9late"]
    assert d.get(0) == "1a"  # a copy: taking does not change the snapshot taken
    assert ready == ["1a", "2b", "2c"] and d.counts() == (2, 2)
