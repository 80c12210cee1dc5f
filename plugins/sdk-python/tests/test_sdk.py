"""The SDK's own tests, natively: `python -m pytest plugins/sdk-python`."""

import dataclasses
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sluice_sdk as sluice  # noqa: E402
from sluice_sdk import testing  # noqa: E402
from sluice_sdk.testing import record  # noqa: E402


@pytest.fixture(autouse=True)
def clean():
    testing.reset()


def test_record_fields_are_views_of_the_batch():
    b = testing.batch([
        record('{"a":1}', key="k1", headers={"h": "1", "g": b"\x00"}, timestamp=7),
        record(None, key=None),
        record("", key=""),
    ])
    r0, r1, r2 = sluice.Batch(b)
    assert isinstance(r0.value, memoryview) and bytes(r0.value) == b'{"a":1}'
    assert r0.key_str == "k1" and r0.timestamp == 7 and r0.json() == {"a": 1}
    assert r0.headers == [("h", b"1"), ("g", b"\x00")] and r0.header("g") == b"\x00"
    assert r1.key is None and r1.is_null and bytes(r1.value) == b""
    assert r2.has_key and r2.key_str == "" and not r2.is_null


def test_filter_keeps_what_the_function_returns_and_isolates_errors():
    @sluice.filter
    def keep(r, config):
        if r.key_str == "boom":
            raise sluice.Error("cannot read this one")
        return r.key_str in config["keep"]

    out = testing.filter(keep, {"keep": ["a"]}, [record("1", key="a"), record("2", key="b"),
                                                 record("3", key="boom"), record("4", key="a")])
    assert [bytes(r.value) for r in out.kept] == [b"1", b"4"]
    assert out.errors == [(2, "cannot read this one")]


def test_filter_batch_takes_one_verdict_per_record_and_fails_single_records():
    @sluice.filter_batch
    def keep(batch, config):
        listed = [k in config["keep"] for k in batch.key_strs()]
        flagged = batch.map(lambda r: r.json()["x"])
        batch.fail(3, "not this one")
        return [a or b for a, b in zip(listed, flagged)]

    out = testing.filter(keep, {"keep": ["a"]}, [
        record('{"x":0}', key="a"), record("{}", key="b"), record('{"x":1}', key="c"),
        record('{"x":1}', key="d"),
    ])
    assert [r.key for r in out.kept] == ["a", "c"]
    assert out.keep == b"\x01\x00\x01\x01"
    assert out.errors == [(1, "KeyError: 'x'"), (3, "not this one")]


def test_filter_batch_that_raises_or_miscounts_fails_every_record():
    @sluice.filter_batch
    def boom(batch, config):
        raise ValueError("no")

    out = testing.filter(boom, {}, [record("1"), record("2")])
    assert out.kept == [] and out.errors == [(0, "ValueError: no"), (1, "ValueError: no")]

    @sluice.filter_batch
    def short(batch, config):
        return [True]

    out = testing.filter(short, {}, [record("1"), record("2")])
    assert out.kept == []
    assert out.errors == [(i, "filter_batch returned 1 verdicts for 2 records") for i in (0, 1)]


def test_a_plain_exception_names_its_type():
    @sluice.filter
    def keep(r, config):
        return r.json()["x"]

    out = testing.filter(keep, {}, [record("{}")])
    assert out.errors == [(0, "KeyError: 'x'")]


def test_decorator_defines_the_export_class_in_the_module():
    @sluice.transform
    def t(r, config, out):
        out.forward(r)

    assert hasattr(sys.modules[__name__], "TransformApi")


def test_dataclass_config_refuses_unknown_and_missing_keys():
    @dataclasses.dataclass
    class Config:
        fields: list
        limit: int = 3

    @sluice.filter(config=Config)
    def keep(r, config):
        return True

    with pytest.raises(testing.InitError) as e:
        testing.init(keep, {"fields": [], "limt": 1})
    assert e.value.invalid and "config.limt: unknown key" in e.value.message
    with pytest.raises(testing.InitError) as e:
        testing.init(keep, {})
    assert e.value.invalid and e.value.message == "config.fields: missing"
    testing.init(keep, {"fields": ["a"]})
    assert keep.plugin.config == Config(["a"], 3)


def test_setup_may_refuse_the_config_or_fail():
    def setup(config):
        if config.get("bad"):
            raise sluice.InvalidConfig("config.bad: not allowed")
        raise RuntimeError("disk on fire")

    @sluice.filter(setup=setup)
    def keep(r, config):
        return True

    with pytest.raises(testing.InitError) as e:
        testing.init(keep, {"bad": True})
    assert e.value.invalid and e.value.message == "config.bad: not allowed"
    with pytest.raises(testing.InitError) as e:
        testing.init(keep, {})
    assert not e.value.invalid and e.value.message == "RuntimeError: disk on fire"


def test_transform_emits_to_ports_and_rolls_back_a_failed_record():
    @sluice.transform
    def split(r, config, out):
        out.emit(r, {"n": int(r.value_str)}, headers={"via": "py"}, port="odd" if int(r.value_str) % 2 else "")
        if r.value_str == "3":
            out.emit(r, "half-written")
            raise sluice.Error("three is bad")
        out.emit(r, value=None, key=None, clear_headers=True, timestamp=99)

    out = testing.transform(split, {}, [record("1", key="a", headers={"h": "x"}, timestamp=5),
                                        record("2"), record("3")])
    assert out.errors == [(2, "three is bad")]
    assert out.inputs == [0, 0, 1, 1]
    first, tomb = out.outputs[0], out.outputs[1]
    assert first.value == b'{"n":1}' and first.key == "a" and first.timestamp == 5
    assert first.headers == [("h", b"x"), ("via", b"py")] and first.port == "odd"
    assert tomb.value is None and tomb.key is None and tomb.headers == [] and tomb.timestamp == 99
    assert out.outputs[2].port == ""


def test_join_reads_declared_tables_and_init_fails_on_undeclared_ones():
    @sluice.join(tables=["products"])
    def enrich(r, config, out, tables):
        name = tables["products"].get(r.key)
        out.emit(r, {"product": (name or b"unknown").decode()})

    out = testing.transform(enrich, {}, [record("{}", key="p1"), record("{}", key="p9")],
                            tables={"products": {"p1": "lamp"}})
    assert [o.json() for o in out.outputs] == [{"product": "lamp"}, {"product": "unknown"}]
    testing.reset()
    with pytest.raises(testing.InitError) as e:
        testing.init(enrich, {})
    assert not e.value.invalid and "products" in e.value.message


def test_presence_state_and_logs():
    @sluice.filter
    def count(r, config):
        n = int(sluice.state.get(r.key) or b"0") + 1
        sluice.state.put(r.key, str(n))
        sluice.log("info", f"{r.key_str}: {n}")
        return sluice.connected(r.key_str)

    testing.set_connected(["c1"])
    out = testing.filter(count, {}, [record("", key="c1"), record("", key="c2"), record("", key="c1")])
    assert [r.key for r in out.kept] == ["c1", "c1"]
    assert testing.state() == {b"c1": b"2", b"c2": b"1"}
    assert testing.logs()[-1] == ("info", "c1: 2")


def test_state_limit_is_enforced():
    testing.reset(state_limit=8)
    sluice.state.put("k", "1234")
    with pytest.raises(sluice.StateFull):
        sluice.state.put("k2", "123456")


def test_glob_match_is_literal_outside_wildcards():
    assert sluice.glob_match("vip-*", "vip-7") and sluice.glob_match("a?c", "abc")
    assert not sluice.glob_match("[ab]", "a") and sluice.glob_match("[ab]", "[ab]")


def test_table_get_many_answers_every_key_from_one_call():
    testing.set_table("t", {"a": "1", "c": "3"})
    assert sluice.table("t").get_many(["a", b"b", "c"]) == [b"1", None, b"3"]
    with pytest.raises(sluice.TableError):
        sluice.table("nope")


def test_glob_match_backtracks():
    assert sluice.glob_match("*-stream", "a-b-stream") and sluice.glob_match("device:*:stream", "device:7:stream")
    assert not sluice.glob_match("*-stream", "a-streams") and sluice.glob_match("**", "")


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "lists"])
def test_both_batch_forms_give_the_same_records(packed):
    testing.use_packed(packed)
    b = testing.batch([record("v1", key="é1", timestamp=5, headers={"h": "x"}),
                       record(None), record("v3", key=b"\xff".decode("latin-1"))])
    assert isinstance(b.key_ends, bytes if packed else list)

    @sluice.transform
    def t(r, config, out):
        out.emit(r, key=r.key_str, headers={"n": str(r.index)})

    out = testing.transform(t, {}, [record("v1", key="é1", timestamp=5, headers={"h": "x"}),
                                    record(None), record("v3", key="k")])
    assert [(o.key, o.value, o.timestamp, o.headers) for o in out.outputs] == [
        ("é1", b"v1", 5, [("h", b"x"), ("n", b"0")]),
        (None, None, 0, [("n", b"1")]),
        ("k", b"v3", 0, [("n", b"2")]),
    ]
    assert out.inputs == [0, 1, 2]
    batch = sluice.Batch(b)
    assert batch.key_strs() == ["é1", None, "ÿ"]
    assert batch.timestamps() == [5, 0, 0] and batch.offsets() == [0, 1, 2]


def test_columns_decode_keys_that_are_not_utf8_as_none():
    raw = testing.batch([record("a", key="ok"), record("b", key="x")])
    raw.keys = b"ok\xff"  # the second key's one byte is not UTF-8
    batch = sluice.Batch(raw)
    assert batch.key_strs() == ["ok", None]
    assert batch.keys() == [b"ok", b"\xff"]
    assert batch.values() == [b"a", b"b"] and len(batch) == 2
    with pytest.raises(IndexError):
        batch[2]
