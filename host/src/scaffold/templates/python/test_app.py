"""Native tests of the plugin (no wasm): `python -m pytest`."""

import json
import os

import pytest

from sluice_sdk import testing

here = os.path.dirname(os.path.abspath(__file__))
app = testing.load_app(os.path.join(here, "app.py"))


@pytest.fixture(autouse=True)
def clean():
    testing.reset()


def fixture(name="basic"):
    with open(os.path.join(here, "fixtures", f"{name}.json")) as f:
        return json.load(f)


def inputs(fx):
    return [testing.record(r["value"] if isinstance(r["value"], str) else r["value"],
                           key=r.get("key"), headers=r.get("headers"), timestamp=r.get("timestamp", 0))
            for r in fx["input"]]


def test_the_fixture():
    fx = fixture()
    fn = next(getattr(app, n) for n in ("keep", "tag", "label") if hasattr(app, n))
    if fn.plugin.kind == "filter":
        out = testing.filter(fn, fx["config"], inputs(fx)).kept
    else:
        out = testing.transform(fn, fx["config"], inputs(fx), tables=fx.get("tables")).outputs
    assert [r.key for r in out] == [r["key"] for r in fx["expected"]]
    assert [json.loads(r.value) for r in out] == [r["value"] for r in fx["expected"]]
    assert [dict((n, v.decode()) for n, v in r.headers) for r in out] == [r["headers"] for r in fx["expected"]]
