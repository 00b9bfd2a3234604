from kstatefun.state.deadlines import DeadlineQueue


def test_due_entries_come_in_due_order_across_partitions_ties_in_push_order():
    q = DeadlineQueue()
    q.push(1, 30, b"c")
    q.push(0, 20, b"b2")
    q.push(2, 20, b"a-later-push-same-deadline")
    q.push(0, 10, b"z")
    q.push(1, 99, b"not-due")
    assert q.next_deadline() == 10
    assert q.pop_due(50) == [
        (0, 10, b"z"),
        (0, 20, b"b2"),
        (2, 20, b"a-later-push-same-deadline"),
        (1, 30, b"c"),
    ]
    assert q.next_deadline() == 99 and len(q) == 1


def test_abort_rearms_what_was_popped_and_commit_forgets_it():
    q = DeadlineQueue()
    q.push(0, 5, b"x")
    assert q.pop_due(10) == [(0, 5, b"x")]
    q.abort()
    assert q.pop_due(10) == [(0, 5, b"x")]
    q.commit()
    q.abort()
    assert q.pop_due(10) == []


def test_dropping_a_partition_forgets_its_entries_even_popped_ones():
    q = DeadlineQueue()
    q.push(0, 5, b"x")
    q.push(1, 5, b"y")
    q.pop_due(10)
    q.drop(0)
    q.abort()
    assert q.pop_due(10) == [(1, 5, b"y")]
