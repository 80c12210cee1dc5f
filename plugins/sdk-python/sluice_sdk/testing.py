"""Run a plugin natively, without wasm, under pytest.

    from sluice_sdk import testing
    import app

    def test_keeps_listed_clients():
        out = testing.filter(app.keep, {"clients": ["c1"]},
                             [testing.record("{}", key="c1"), testing.record("{}", key="c2")])
        assert [r.key for r in out.kept] == ["c1"]

The batch crosses the same flat layout the host sends, and results are
decoded back into `TestRecord`s, so what passes here passes in the host.
"""

import json as _json
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Tuple

from array import array

from .batch import ints
from . import _host, Batch, FLAG_HAS_KEY, FLAG_NULL_VALUE, _as_bytes


@dataclass
class TestRecord:
    """A record to send in, or one that came out."""

    value: Optional[bytes]
    key: Optional[str] = None
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0
    port: str = ""

    __test__ = False  # not a pytest test class

    def json(self) -> Any:
        return _json.loads(self.value)


def record(value, key=None, headers=None, timestamp: int = 0) -> TestRecord:
    """A test record; `value` may be bytes, str or a JSON-serialisable object
    (None: a null value); `headers` a dict or (name, value) pairs."""
    pairs = list(headers.items() if isinstance(headers, dict) else headers or [])
    return TestRecord(
        None if value is None else bytes(_as_bytes(value)),
        key,
        [(n, bytes(_as_bytes(v))) for n, v in pairs],
        timestamp,
    )


def batch(records: Iterable[TestRecord], origin=None):
    """The flat batch the host would send for `records`."""
    flags, keys, key_ends, values, value_ends = bytearray(), bytearray(), [], bytearray(), []
    timestamps, hb, he, rhe = [], bytearray(), [], []
    records = list(records)
    for r in records:
        f = 0
        if r.key is not None:
            f |= FLAG_HAS_KEY
            keys += _as_bytes(r.key)
        if r.value is None:
            f |= FLAG_NULL_VALUE
        else:
            values += r.value
        for name, v in r.headers:
            hb += name.encode()
            he.append(len(hb))
            hb += v
            he.append(len(hb))
        flags.append(f)
        key_ends.append(len(keys))
        value_ends.append(len(values))
        timestamps.append(r.timestamp)
        rhe.append(len(he) // 2)
    col = array.tobytes if _host.PACKED else array.tolist
    return _host.Batch(
        origin or _host.Origin(), col(array("Q", range(len(records)))), col(array("Q")),
        bytes(flags), bytes(keys), col(array("I", key_ends)), bytes(values),
        col(array("I", value_ends)), col(array("q", timestamps)), bytes(hb),
        col(array("I", he)), col(array("I", rhe)),
    )


def use_packed(packed: bool = True) -> None:
    """Whether batches cross in packed form, as in the `packed-*` worlds
    (the default), or as lists of integers, as in `filter`, `transform`
    and `join`."""
    _host.PACKED = packed


def _decode(raw) -> List[TestRecord]:
    out = []
    for r in Batch(raw):
        out.append(TestRecord(
            None if r.is_null else bytes(r.value),
            r.key_str if r.has_key else None,
            [(n, bytes(v)) for n, v in r.headers],
            r.timestamp,
        ))
    return out


@dataclass
class FilterOut:
    kept: List[TestRecord]
    keep: bytes
    errors: List[Tuple[int, str]]


@dataclass
class TransformOut:
    outputs: List[TestRecord]
    inputs: List[int]
    errors: List[Tuple[int, str]]


def init(fn, config=None):
    """Runs `fn`'s init with `config` (a dict); raises `InitError`."""
    try:
        fn.plugin.init(_json.dumps(config or {}))
    except _host.NativeInitError as e:
        raise InitError(e.invalid, e.message) from None


class InitError(Exception):
    """The plugin refused its config (`invalid`) or failed to start."""

    def __init__(self, invalid: bool, message: str):
        super().__init__(message)
        self.invalid = invalid
        self.message = message


def filter(fn, config, records: Iterable[TestRecord]) -> FilterOut:
    """Inits the `@filter` function `fn` with `config` and runs one batch."""
    records = list(records)
    init(fn, config)
    res = fn.plugin.filter(batch(records))
    failed = {e.index for e in res.errors}
    kept = [r for i, r in enumerate(records) if res.keep[i] and i not in failed]
    return FilterOut(kept, res.keep, [(e.index, e.message) for e in res.errors])


def transform(fn, config, records: Iterable[TestRecord], tables=None) -> TransformOut:
    """Inits the `@transform` or `@join` function `fn` with `config` (and the
    `tables`, {name: {key: value}}) and runs one batch."""
    for name, rows in (tables or {}).items():
        set_table(name, rows)
    init(fn, config)
    res = fn.plugin.transform(batch(records))
    outputs = _decode(res.outputs)
    for r, p in zip(outputs, ints(res.ports, "I")):
        r.port = res.port_names[p]
    return TransformOut(
        outputs, ints(res.inputs, "I"), [(e.index, e.message) for e in res.errors]
    )


def set_connected(clients: Iterable[str]) -> None:
    """Which clients `sluice_sdk.connected` reports as connected."""
    _host.CONNECTED.clear()
    _host.CONNECTED.update(clients)


def set_table(name: str, rows: dict) -> None:
    """Declares table `name` with `rows` ({key: value}, str or bytes)."""
    _host.TABLES[name] = {bytes(_as_bytes(k)): bytes(_as_bytes(v)) for k, v in rows.items()}


def state() -> dict:
    """The plugin's state, {key: value}."""
    return dict(_host.STATE)


def reset(state_limit: Optional[int] = None) -> None:
    """Clears state, tables, presence and logs; sets the state limit; goes
    back to packed batches."""
    _host.PACKED = True
    _host.STATE.clear()
    _host.TABLES.clear()
    _host.CONNECTED.clear()
    _host.LOGS.clear()
    _host.STATE_LIMIT[0] = state_limit


def logs() -> List[Tuple[str, str]]:
    """What the plugin logged, as (level, message)."""
    return list(_host.LOGS)


def load_app(path: str, name: Optional[str] = None):
    """Imports the plugin module at `path` (an `app.py`) under a name of its
    own, so several plugins' tests run in one pytest session."""
    import importlib.util
    import os
    import sys

    name = name or "sluice_app_" + os.path.basename(os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
