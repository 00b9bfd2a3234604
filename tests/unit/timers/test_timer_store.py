from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import encode_timer_key, encode_timer_value


def timer(due, target="t"):
    return encode_timer_value(due, "ns/echo", target, "io.statefun.types/int", b"")


def test_a_timer_fired_in_an_aborted_transaction_fires_again():
    s = TimerStore()
    s.add_partition(0)
    key = encode_timer_key("ns/f", "a", "tok", False)
    s.schedule(0, key, timer(100), 100)
    s.apply_overlay()  # committed
    assert list(s.pop_due(99)) == []
    assert [k for _, k, _ in s.pop_due(100)] == [key]
    assert s.get(0, key) is None  # tombstoned in the open transaction
    s.discard_overlay()  # abort
    assert [k for _, k, _ in s.pop_due(150)] == [key]
    s.apply_overlay()  # commit: gone for good
    s.discard_overlay()
    assert list(s.pop_due(10_000)) == [] and s.pending_count() == 0


def test_cancelled_and_rescheduled_timers_fire_once_at_their_latest_due_time():
    s = TimerStore()
    s.add_partition(0)
    key = encode_timer_key("ns/f", "a", "tok", False)
    s.schedule(0, key, timer(100), 100)
    s.cancel(0, key)
    s.schedule(0, key, timer(200, "later"), 200)
    s.apply_overlay()
    assert list(s.pop_due(150)) == []  # the stale heap entry for 100 is skipped
    fired = list(s.pop_due(250))
    assert len(fired) == 1 and fired[0][2] == timer(200, "later")


def test_restore_indexes_timers_by_due_time():
    s = TimerStore()
    rows = s.add_partition(3)
    rows[b"k1"] = timer(300)
    rows[b"k2"] = timer(100)
    s.restored(3, 0)
    assert s.next_due() == 100 and s.pending_count() == 2
    assert [k for _, k, _ in s.pop_due(1000)] == [b"k2", b"k1"]
