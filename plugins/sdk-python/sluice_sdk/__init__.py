"""The Sluice plugin SDK for Python.

A plugin is a plain function with a decorator::

    import sluice_sdk as sluice

    @sluice.filter
    def keep(record: sluice.Record, config: dict) -> bool:
        return record.key_str in config["clients"]

`@filter`, `@transform` and `@join` define, in the function's module, the
class componentize-py exports (`PackedFilterApi` or `PackedTransformApi`,
and their `FilterApi`/`TransformApi` twins), so the module is the
component's app: ``componentize-py -d wit -w packed-filter componentize app``.
Build for the `packed-*` worlds (wit/packed.wit): they carry the batch's
integer columns as bytes, which costs Python one copy per column instead of
one `int` per element. The SDK also runs in the `filter`, `transform` and
`join` worlds, more slowly.

Records are views into the batch the host sent (`sluice_sdk.batch`): a
field is decoded for the whole batch, one column at a time, when a record
first asks for it, and `Record.value` is a memoryview of the batch's
buffer. An exception raised for one record becomes that record's error (the
stage's `on_error` policy handles it); the other records are unaffected.
"""

import dataclasses
import json as _json
import sys
from typing import Any, Callable, Iterable, List, Optional, Tuple

from . import _host
from ._host import StateFull, TableError
from .batch import FLAG_HAS_KEY, FLAG_NULL_VALUE, Batch, Error, Record, message
from .output import KEEP, Output, _as_bytes

__all__ = [
    "Batch",
    "Record",
    "Output",
    "Error",
    "InvalidConfig",
    "InitFailed",
    "StateFull",
    "TableError",
    "filter",
    "filter_batch",
    "transform",
    "join",
    "connected",
    "log",
    "state",
    "table",
    "glob_match",
]

class InvalidConfig(Exception):
    """Raised at init (by the config class or `setup`): the stage's config
    does not suit the plugin. Name the offending key."""


class InitFailed(Exception):
    """Raised at init for any other reason the plugin cannot start."""


def _make_config(config_type, raw: str):
    try:
        data = _json.loads(raw) if raw else {}
    except ValueError as e:
        raise InvalidConfig(f"config is not JSON: {e}") from None
    if config_type is None:
        return data
    if dataclasses.is_dataclass(config_type):
        if not isinstance(data, dict):
            raise InvalidConfig("config: expected a table")
        names = {f.name for f in dataclasses.fields(config_type)}
        for k in data:
            if k not in names:
                raise InvalidConfig(f"config.{k}: unknown key (known: {', '.join(sorted(names))})")
        for f in dataclasses.fields(config_type):
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default and f.name not in data:
                raise InvalidConfig(f"config.{f.name}: missing")
    try:
        return config_type(**data) if isinstance(data, dict) else config_type(data)
    except (InvalidConfig, InitFailed):
        raise
    except (TypeError, ValueError) as e:
        raise InvalidConfig(f"config: {e}") from None


class _Plugin:
    """One decorated function and the state its instance keeps."""

    def __init__(self, kind: str, fn: Callable, config_type, setup, tables):
        self.kind, self.fn, self.config_type, self.setup = kind, fn, config_type, setup
        self.table_names = list(tables or ())
        self.config = None
        self.tables: dict = {}

    def init(self, raw: str) -> None:
        try:
            config = _make_config(self.config_type, raw)
            if self.setup is not None:
                config = self.setup(config)
            self.tables = {n: table(n) for n in self.table_names}
        except InvalidConfig as e:
            raise _host.init_error(True, str(e)) from None
        except TableError as e:
            raise _host.init_error(False, str(e)) from None
        except Exception as e:  # the plugin's own code failed
            raise _host.init_error(False, message(e)) from None
        self.config = config

    def filter(self, raw):
        if self.kind == "filter_batch":
            return self.filter_batch(raw)
        fn, config, errors = self.fn, self.config, []
        batch = Batch(raw)
        n = len(batch)
        keep = bytearray(n)
        for i in range(n):
            try:
                if fn(Record(batch, i), config):
                    keep[i] = 1
            except Exception as e:
                errors.append(_host.RecordError(i, message(e)))
        return _host.FilterResult(bytes(keep), errors)

    def filter_batch(self, raw):
        batch = Batch(raw)
        n = len(batch)
        try:
            verdicts = self.fn(batch, self.config)
            keep = bytes(map(bool, verdicts))
        except Exception as e:  # the whole batch failed: every record says why
            text = message(e)
            return _host.FilterResult(bytes(n), [_host.RecordError(i, text) for i in range(n)])
        if len(keep) != n:
            text = f"filter_batch returned {len(keep)} verdicts for {n} records"
            return _host.FilterResult(bytes(n), [_host.RecordError(i, text) for i in range(n)])
        return _host.FilterResult(keep, [_host.RecordError(i, m) for i, m in batch.errors])

    def transform(self, raw):
        fn, config, out, errors = self.fn, self.config, Output(), []
        batch = Batch(raw)
        args = (config, out, self.tables) if self.kind == "join" else (config, out)
        for i in range(len(batch)):
            out._input = i
            mark = out._mark()
            try:
                fn(Record(batch, i), *args)
            except Exception as e:
                out._rollback(mark)
                errors.append(_host.RecordError(i, message(e)))
        return out._finish(errors)


def _export(kind: str, fn: Callable, config, setup, tables) -> Callable:
    plugin = _Plugin(kind, fn, config, setup, tables)
    fn.plugin = plugin
    module = sys.modules[fn.__module__]
    if kind in ("filter", "filter_batch"):

        class FilterApi:
            def init(self, config: str) -> None:
                plugin.init(config)

            def filter(self, input):
                return plugin.filter(input)

        module.FilterApi = module.PackedFilterApi = FilterApi
    else:

        class TransformApi:
            def init(self, config: str) -> None:
                plugin.init(config)

            def transform(self, input):
                return plugin.transform(input)

        module.TransformApi = module.PackedTransformApi = TransformApi
    return fn


def _decorator(kind: str, fn, config, setup, tables):
    if fn is not None:
        return _export(kind, fn, config, setup, tables)
    return lambda f: _export(kind, f, config, setup, tables)


def filter(fn=None, *, config=None, setup=None):
    """Makes `fn(record, config) -> bool` the component's filter.

    `config`: a dataclass (unknown and missing keys are refused, naming the
    key) or any callable given the stage's config; without one, `fn` gets
    the config as a dict. `setup(config)` runs once per instance after
    that, and what it returns is what `fn` gets. Raise `InvalidConfig` from
    either to refuse the config.
    """
    return _decorator("filter", fn, config, setup, None)


def filter_batch(fn=None, *, config=None, setup=None):
    """Makes `fn(batch: Batch, config) -> iterable of bool` the component's
    filter: one call per batch, one verdict per record, in order. This is
    the fast way in Python: `[k in clients for k in batch.key_strs()]` runs
    at C speed, where `@filter` costs a Python call per record.

    `batch.map(f)` runs a per-record function for the records a column
    cannot decide, failing just the records whose call raises, and
    `batch.fail(i, message)` fails record `i` outright. An exception out of
    `fn` fails every record of the batch with its message. `config` and
    `setup` as for `filter`.
    """
    return _decorator("filter_batch", fn, config, setup, None)


def transform(fn=None, *, config=None, setup=None):
    """Makes `fn(record, config, out: Output)` the component's transform;
    `config` and `setup` as for `filter`."""
    return _decorator("transform", fn, config, setup, None)


def join(fn=None, *, tables: Iterable[str] = (), config=None, setup=None):
    """Makes `fn(record, config, out, tables)` the component's join: a
    transform that reads the host's keyed `tables` (a dict of the names
    given, opened at init). Build with `-w join`."""
    return _decorator("join", fn, config, setup, tables)


def connected(client: str) -> bool:
    """Whether `client` has an SSE connection open (the host's presence)."""
    return _host.connected(client)


def log(level: str, message: str) -> None:
    """Writes to the host's log; `level` is trace, debug, info, warn or error."""
    _host.log(level, message)


class _State:
    """Keyed state private to the plugin, kept by the host (see wit/state.wit)."""

    def get(self, key) -> Optional[bytes]:
        return _host.state_get(bytes(_as_bytes(key)))

    def put(self, key, value) -> None:
        """Raises `StateFull` past the plugin's `state_limit`."""
        _host.state_put(bytes(_as_bytes(key)), bytes(_as_bytes(value)))

    def delete(self, key) -> None:
        _host.state_delete(bytes(_as_bytes(key)))


state = _State()


class Table:
    """A read-only view of one of the host's keyed tables."""

    def __init__(self, handle):
        self._t = handle

    def get(self, key) -> Optional[bytes]:
        """The current value for `key` (bytes, str or a memoryview), if any."""
        return self._t.get(bytes(_as_bytes(key)))

    def get_many(self, keys: Iterable) -> List[Optional[bytes]]:
        """The values of many keys in one host call, all from the same
        version of the table; None where a key is missing."""
        flat, ends = bytearray(), []
        for k in keys:
            flat += _as_bytes(k)
            ends.append(len(flat))
        res = self._t.get_many(bytes(flat), ends)
        out, start = [], 0
        for i, end in enumerate(res.value_ends):
            out.append(res.values[start:end] if res.found[i] else None)
            start = end
        return out


def table(name: str) -> Table:
    """Opens the host table `name`, which the stage's `tables` must list;
    raises `TableError` otherwise. At init, that refuses to start."""
    return Table(_host.open_table(name))


def glob_match(pattern: str, text: str) -> bool:
    """`*` matches any run of characters, `?` any one; like the Rust SDK.

    (No `fnmatch`: it brings `re`, and componentize-py bundles only what is
    imported when the app is built.)"""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
