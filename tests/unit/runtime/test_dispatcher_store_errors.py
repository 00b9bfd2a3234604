"""A local state store that fails inside a function's state read (state_store rocksdb: full
disk, I/O error) stops the worker: it is no fault of the input, so no dead letter."""

import pytest
from tests.unit.runtime.test_dispatcher import dead_letters, invoke, make

from kstatefun import IntType, StatefulFunctions, ValueSpec
from kstatefun.errors import StateStoreError


class FailingRows(dict):
    def get(self, key, default=None):
        raise StateStoreError("reading the local state store /x failed: I/O error")


def test_a_failing_state_store_stops_the_worker_and_is_no_dead_letter():
    functions = StatefulFunctions()
    functions.bind("ns/f", specs=[ValueSpec("seen", IntType)])(
        lambda context, message: context.storage.seen
    )
    d, store, txn = make(functions)
    store._committed[0] = FailingRows()
    with pytest.raises(StateStoreError, match="I/O error"):
        invoke(d)
    assert dead_letters(txn) == []
