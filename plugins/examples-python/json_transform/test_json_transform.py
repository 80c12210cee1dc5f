import os
import sys

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "sdk-python"))
from sluice_sdk import testing  # noqa: E402
from sluice_sdk.testing import record  # noqa: E402

app = testing.load_app(os.path.join(here, "app.py"))


def test_projects_renames_and_adds_headers():
    out = testing.transform(app.project, {
        "fields": ["event", "client_id", "missing"],
        "rename": {"event": "type"},
        "headers": {"via": "sluice"},
    }, [record('{"client_id":"c1","event":"login","secret":1}', key="c1", headers={"h": "1"},
               timestamp=42), record("[]")])
    assert len(out.outputs) == 1
    o = out.outputs[0]
    assert o.value == b'{"type":"login","client_id":"c1"}'
    assert o.key == "c1" and o.timestamp == 42 and o.headers == [("h", b"1"), ("via", b"sluice")]
    assert out.errors == [(1, "value is not a JSON object")]


def test_a_rename_of_an_unlisted_field_is_refused():
    with pytest.raises(testing.InitError) as e:
        testing.init(app.project, {"fields": ["a"], "rename": {"b": "c"}})
    assert e.value.invalid and e.value.message == "config.rename.b: `b` is not one of `fields`"
