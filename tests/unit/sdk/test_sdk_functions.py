import functools
from datetime import timedelta

import pytest

from kstatefun import IntType, StatefulFunctions, StringType, ValueSpec
from kstatefun.errors import ConfigError


def fn(context, message):
    pass


async def afn(context, message):
    pass


def test_register_and_lookup():
    functions = StatefulFunctions()
    seen = ValueSpec("seen", IntType)
    functions.register("example/greeter", fn, [seen])
    spec = functions.for_typename("example/greeter")
    assert spec.typename == "example/greeter"
    assert spec.fun is fn
    assert spec.specs == {"seen": seen}
    assert spec.is_async is False
    assert functions.for_typename("example/unknown") is None
    assert functions.typenames() == ["example/greeter"]


def test_bind_returns_the_function_and_detects_async():
    functions = StatefulFunctions()

    @functions.bind("example/a", specs=[ValueSpec("name", StringType)])
    async def a(context, message):
        pass

    @functions.bind("example/b")
    def b(context, message):
        pass

    assert a.__name__ == "a"
    assert functions.for_typename("example/a").is_async is True
    assert functions.for_typename("example/b").is_async is False
    assert functions.for_typename("example/b").specs == {}


def test_callables_of_every_shape():
    class Handler:
        def __call__(self, context, message):
            pass

    class AsyncHandler:
        async def __call__(self, context, message):
            pass

    class Service:
        def handle(self, context, message):
            pass

    functions = StatefulFunctions()
    functions.register("example/obj", Handler())
    functions.register("example/aobj", AsyncHandler())
    functions.register("example/method", Service().handle)
    functions.register("example/partial", functools.partial(lambda extra, c, m: None, 1))
    functions.register("example/apartial", functools.partial(afn))
    assert functions.for_typename("example/obj").is_async is False
    assert functions.for_typename("example/aobj").is_async is True
    assert functions.for_typename("example/apartial").is_async is True


@pytest.mark.parametrize(
    ("typename", "fun", "specs", "match"),
    [
        ("noslash", fn, None, "not a valid type name"),
        ("ns/", fn, None, "not a valid type name"),
        (None, fn, None, "typename"),
        ("example/f", "not callable", None, "not callable"),
        ("example/f", lambda context: None, None, "two arguments"),
        ("example/f", fn, [ValueSpec("x", IntType), ValueSpec("x", StringType)], "twice"),
        ("example/f", fn, ["x"], "not a ValueSpec"),
    ],
)
def test_registration_errors(typename, fun, specs, match):
    with pytest.raises(ConfigError, match=match):
        StatefulFunctions().register(typename, fun, specs)


def test_registering_a_typename_twice_fails():
    functions = StatefulFunctions()
    functions.register("example/f", fn)
    with pytest.raises(ConfigError, match="'example/f' is registered twice"):
        functions.register("example/f", afn)


def test_include_merges_and_rejects_clashes():
    a, b = StatefulFunctions(), StatefulFunctions()
    a.register("example/a", fn)
    b.register("example/b", afn)
    a.include(b)
    assert a.typenames() == ["example/a", "example/b"]
    assert a.for_typename("example/b").is_async
    c = StatefulFunctions()
    c.register("example/b", fn)
    with pytest.raises(ConfigError, match="example/b"):
        a.include(c)


@pytest.mark.parametrize("name", ["", "Seen", "1seen", "has space", "class", "with-dash"])
def test_value_spec_name_validation(name):
    with pytest.raises(ConfigError):
        ValueSpec(name, IntType)


def test_value_spec_valid_names_and_type_check():
    assert ValueSpec("_seen_2", IntType).name == "_seen_2"
    with pytest.raises(ConfigError, match="Type"):
        ValueSpec("seen", int)


def test_value_spec_expiration():
    plain = ValueSpec("a", IntType)
    assert (plain.after_call, plain.after_write, plain.duration) == (False, False, 0)
    call = ValueSpec("a", IntType, expire_after_call=timedelta(seconds=2))
    assert (call.after_call, call.after_write, call.duration) == (True, False, 2000)
    write = ValueSpec("a", IntType, expire_after_write=timedelta(minutes=1))
    assert (write.after_call, write.after_write, write.duration) == (False, True, 60000)
    zero = ValueSpec("a", IntType, expire_after_call=timedelta(0))
    assert zero.expire_after_call is None and zero.duration == 0
    with pytest.raises(ConfigError, match="not both"):
        ValueSpec("a", IntType, timedelta(seconds=1), timedelta(seconds=1))
    with pytest.raises(ConfigError, match="timedelta"):
        ValueSpec("a", IntType, expire_after_call=5)
    with pytest.raises(ConfigError, match="negative"):
        ValueSpec("a", IntType, expire_after_write=timedelta(seconds=-1))


def test_sub_millisecond_ttl_rounds_up_instead_of_never_expiring():
    from datetime import timedelta

    from kstatefun import IntType, ValueSpec

    assert ValueSpec("v", IntType, expire_after_write=timedelta(microseconds=500)).duration == 1
    assert ValueSpec("v", IntType, expire_after_call=timedelta(seconds=2)).duration == 2000
    assert ValueSpec("v", IntType).duration == 0
