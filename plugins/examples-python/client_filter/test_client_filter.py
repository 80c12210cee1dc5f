import os
import sys

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "sdk-python"))
from sluice_sdk import testing  # noqa: E402
from sluice_sdk.testing import record  # noqa: E402

app = testing.load_app(os.path.join(here, "app.py"))


@pytest.fixture(autouse=True)
def clean():
    testing.reset()


def test_keeps_listed_and_matching_keys():
    out = testing.filter(app.keep, {"clients": ["c1"], "patterns": ["vip-*"]},
                         [record("{}", key=k) for k in ["c1", "c2", "vip-9", None]])
    assert [r.key for r in out.kept] == ["c1", "vip-9"]


def test_reads_the_id_from_a_field_and_reports_bad_json():
    out = testing.filter(app.keep, {"clients": ["c1", "7"], "field": "client"},
                         [record({"client": "c1"}), record({"client": 7}), record("not json")])
    assert [r.json() for r in out.kept] == [{"client": "c1"}, {"client": 7}]
    assert out.errors[0][0] == 2 and out.errors[0][1].startswith("value is not JSON")


def test_only_connected_clients():
    testing.set_connected(["c2"])
    out = testing.filter(app.keep, {"only_connected": True}, [record("", key="c1"), record("", key="c2")])
    assert [r.key for r in out.kept] == ["c2"]


def test_refuses_a_config_that_drops_everything():
    with pytest.raises(testing.InitError) as e:
        testing.init(app.keep, {})
    assert e.value.invalid and "set `clients`, `patterns` or `only_connected`" in e.value.message
    with pytest.raises(testing.InitError) as e:
        testing.init(app.keep, {"clients": ["a"], "client": "b"})
    assert e.value.message.startswith("config.client: unknown key")


def test_clients_only_reads_the_key_column():
    keys = ["c1", None, "c2", "c1", "\u00e9t\u00e9"]
    out = testing.filter(app.keep, {"clients": ["c1", "\u00e9t\u00e9"]}, [record("{}", key=k) for k in keys])
    assert [r.key for r in out.kept] == ["c1", "c1", "\u00e9t\u00e9"] and out.errors == []
