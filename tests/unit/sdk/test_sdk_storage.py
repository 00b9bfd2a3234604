import copy
import pickle

import pytest

from kstatefun import IntType, StringType, ValueSpec, make_json_type
from kstatefun.errors import DecodeError, FunctionError
from kstatefun.sdk.storage import storage_class, storage_mutations

SPECS = {
    "seen": ValueSpec("seen", IntType),
    "name": ValueSpec("name", StringType),
    "doc": ValueSpec("doc", make_json_type("example/doc")),
}


def make(stored=None):
    stored = stored or {}
    reads = []

    def read(name):
        reads.append(name)
        return stored.get(name)

    return storage_class("example/greeter", SPECS)(read), reads


def test_get_decodes_lazily_and_reads_each_name_once():
    storage, reads = make({"seen": IntType.serialize(3)})
    assert reads == []
    assert storage.seen == 3
    assert storage.seen == 3
    assert storage.name is None  # nothing stored
    assert reads == ["seen", "name"]
    assert storage_mutations(storage) == {}


def test_set_encodes_at_once_and_is_read_back():
    storage, reads = make({"seen": IntType.serialize(3)})
    storage.seen = storage.seen + 1
    storage.name = "Zoë"
    assert storage.seen == 4
    assert storage.name == "Zoë"
    assert storage_mutations(storage) == {
        "seen": b"\x0d\x04\x00\x00\x00",
        "name": b"\x0a\x04Zo\xc3\xab",
    }
    assert reads == ["seen"]


def test_setting_does_not_read():
    storage, reads = make({"seen": IntType.serialize(3)})
    storage.seen = 1
    assert storage.seen == 1
    assert reads == []


def test_delete_records_none_and_reads_as_none():
    storage, reads = make({"seen": IntType.serialize(3)})
    del storage.seen
    assert storage.seen is None
    assert storage_mutations(storage) == {"seen": None}
    assert reads == []
    storage.seen = 9
    assert storage_mutations(storage) == {"seen": b"\x0d\x09\x00\x00\x00"}


def test_values_are_snapshots_like_statefun():
    storage, _ = make()
    doc = {"n": 1}
    storage.doc = doc
    doc["n"] = 2  # not persisted until assigned again
    assert storage.doc == {"n": 1}
    got = storage.doc
    got["n"] = 3
    assert storage.doc == {"n": 1}


def test_unknown_names_raise_attribute_error_like_statefun():
    storage, _ = make()
    message = "'missing' is not a registered ValueSpec for the function 'example/greeter'"
    with pytest.raises(AttributeError, match=message):
        _ = storage.missing
    with pytest.raises(AttributeError, match=message):
        storage.missing = 1
    with pytest.raises(AttributeError, match=message):
        del storage.missing
    assert not hasattr(storage, "missing")


def test_wrong_type_raises_function_error_naming_state_and_function():
    storage, _ = make()
    with pytest.raises(FunctionError, match="'seen'.*io.statefun.types/int") as e:
        storage.seen = "three"
    assert "example/greeter" in str(e.value)
    with pytest.raises(FunctionError, match="'seen'"):
        storage.seen = 2**40
    with pytest.raises(FunctionError, match="del context.storage.name"):
        storage.name = None
    assert storage_mutations(storage) == {}


def test_corrupt_stored_bytes_raise_decode_error():
    storage, _ = make({"seen": b"\x0d\x01"})
    with pytest.raises(DecodeError, match="io.statefun.types/int"):
        _ = storage.seen


def test_internals_cannot_be_reached_as_state():
    storage, _ = make()
    with pytest.raises(AttributeError):
        storage.owner = "x"
    assert sorted(dir(storage)) == ["doc", "name", "seen"]


def test_zero_is_stored_as_empty_bytes_not_as_a_deletion():
    storage, _ = make({"seen": IntType.serialize(3)})
    storage.seen = 0
    assert storage_mutations(storage) == {"seen": b""}  # proto3 default: no bytes, still a value
    assert storage.seen == 0
    stored, _ = make({"seen": b""})
    assert stored.seen == 0


def test_storage_cannot_be_copied_or_pickled():
    storage, _ = make()
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(storage)
    with pytest.raises(TypeError, match="cannot be copied"):
        pickle.dumps(storage)
