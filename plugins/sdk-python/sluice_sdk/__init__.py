"""The Sluice plugin SDK for Python.

A plugin is a plain function with a decorator::

    import sluice_sdk as sluice

    @sluice.filter
    def keep(record: sluice.Record, config: dict) -> bool:
        return record.key_str in config["clients"]

`@filter`, `@transform` and `@join` define, in the function's module, the
class componentize-py exports (`FilterApi` or `TransformApi`), so the module
is the component's app: ``componentize-py -d wit -w filter componentize app``.

Records are views into the batch the host sent: `Record.value` and
`Record.key` are memoryviews of the batch's buffers, made only when asked
for. An exception raised for one record becomes that record's error (the
stage's `on_error` policy handles it); the other records are unaffected.
"""

import dataclasses
import json as _json
import sys
from typing import Any, Callable, Iterable, List, Optional, Tuple

from . import _host
from ._host import StateFull, TableError

__all__ = [
    "Record",
    "Output",
    "Error",
    "InvalidConfig",
    "InitFailed",
    "StateFull",
    "TableError",
    "filter",
    "transform",
    "join",
    "connected",
    "log",
    "state",
    "table",
    "glob_match",
]

FLAG_HAS_KEY = 1
FLAG_NULL_VALUE = 2
KEEP = object()
"""Default of `Output.emit`'s `key` and `value`: the input record's own."""


class Error(Exception):
    """One record could not be handled; the message is for an operator."""


class InvalidConfig(Exception):
    """Raised at init (by the config class or `setup`): the stage's config
    does not suit the plugin. Name the offending key."""


class InitFailed(Exception):
    """Raised at init for any other reason the plugin cannot start."""


class Record:
    """One record of a batch, read in place."""

    __slots__ = ("_b", "index")

    def __init__(self, batch, index: int):
        self._b = batch
        self.index = index

    def _range(self, ends) -> Tuple[int, int]:
        i = self.index
        return (ends[i - 1] if i else 0), ends[i]

    @property
    def has_key(self) -> bool:
        return bool(self._b.record_flags[self.index] & FLAG_HAS_KEY)

    @property
    def key(self) -> Optional[memoryview]:
        """The key's bytes, or None when the record has no key."""
        if not self._b.record_flags[self.index] & FLAG_HAS_KEY:
            return None
        a, b = self._range(self._b.key_ends)
        return memoryview(self._b.keys)[a:b]

    @property
    def key_str(self) -> Optional[str]:
        """The key as UTF-8 text; None without a key or when it is not UTF-8."""
        if not self._b.record_flags[self.index] & FLAG_HAS_KEY:
            return None
        a, b = self._range(self._b.key_ends)
        try:
            return self._b.keys[a:b].decode()
        except UnicodeDecodeError:
            return None

    @property
    def is_null(self) -> bool:
        """Whether the value is null (a Kafka tombstone)."""
        return bool(self._b.record_flags[self.index] & FLAG_NULL_VALUE)

    @property
    def value(self) -> memoryview:
        """The value's bytes (empty for a null value)."""
        a, b = self._range(self._b.value_ends)
        return memoryview(self._b.values)[a:b]

    @property
    def value_str(self) -> str:
        """The value as UTF-8 text (raises for other bytes)."""
        a, b = self._range(self._b.value_ends)
        return self._b.values[a:b].decode()

    def json(self) -> Any:
        """The value parsed as JSON; raises `Error` naming the problem."""
        a, b = self._range(self._b.value_ends)
        try:
            return _json.loads(self._b.values[a:b])
        except ValueError as e:
            raise Error(f"value is not JSON: {e}") from None

    @property
    def timestamp(self) -> int:
        """Milliseconds since the Unix epoch."""
        return self._b.timestamps[self.index]

    @property
    def offset(self) -> int:
        """The Kafka offset, or the milliseconds part of a Redis entry id."""
        return self._b.offsets[self.index]

    @property
    def origin(self):
        """Where the batch came from: `.source`, `.topic`, `.partition`, `.db`."""
        return self._b.origin

    @property
    def headers(self) -> List[Tuple[str, bytes]]:
        """The headers as (name, value) pairs, in order."""
        b = self._b
        first, last = self._range(b.record_header_ends)
        ends, raw, out = b.header_ends, b.header_bytes, []
        for h in range(first, last):
            n0 = ends[2 * h - 1] if h else 0
            n1, v1 = ends[2 * h], ends[2 * h + 1]
            out.append((raw[n0:n1].decode(), raw[n1:v1]))
        return out

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header called `name`."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"Record(index={self.index}, key={self.key_str!r}, value={bytes(self.value)!r})"


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    if isinstance(value, str):
        return value.encode()
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Output:
    """Where a transform writes its records for one batch, in flat form."""

    def __init__(self):
        self.keys = bytearray()
        self.key_ends: List[int] = []
        self.values = bytearray()
        self.value_ends: List[int] = []
        self.flags = bytearray()
        self.timestamps: List[int] = []
        self.header_bytes = bytearray()
        self.header_ends: List[int] = []
        self.record_header_ends: List[int] = []
        self.inputs: List[int] = []
        self.ports: List[int] = []
        self.port_names: List[str] = [""]
        self._port_index = {"": 0}
        self._input = 0

    def forward(self, record: Record, port: str = "") -> None:
        """Sends `record` on unchanged, to `port` (default: the default port)."""
        self.emit(record, port=port)

    def emit(
        self,
        record: Record,
        value=KEEP,
        *,
        key=KEEP,
        headers=None,
        clear_headers: bool = False,
        timestamp: Optional[int] = None,
        port: str = "",
    ) -> None:
        """Writes one output record made from `record`.

        It copies the record's key, value, timestamp and headers, except what
        is given: `value` (bytes, str, or any JSON-serialisable object;
        None for a null value), `key` (bytes or str; None for no key),
        `headers` (a dict or (name, value) pairs, added after the record's
        own unless `clear_headers`), `timestamp`, and `port`.
        """
        flags = 0
        if key is KEEP:
            if record.has_key:
                flags |= FLAG_HAS_KEY
                self.keys += record.key
        elif key is not None:
            flags |= FLAG_HAS_KEY
            self.keys += _as_bytes(key)
        if value is KEEP:
            if record.is_null:
                flags |= FLAG_NULL_VALUE
            self.values += record.value
        elif value is None:
            flags |= FLAG_NULL_VALUE
        else:
            self.values += _as_bytes(value)
        if not clear_headers:
            for name, v in record.headers:
                self._header(name, v)
        if headers:
            for name, v in headers.items() if isinstance(headers, dict) else headers:
                self._header(name, v)
        self.key_ends.append(len(self.keys))
        self.value_ends.append(len(self.values))
        self.flags.append(flags)
        self.timestamps.append(record.timestamp if timestamp is None else timestamp)
        self.record_header_ends.append(len(self.header_ends) // 2)
        self.inputs.append(self._input)
        p = self._port_index.get(port)
        if p is None:
            p = self._port_index[port] = len(self.port_names)
            self.port_names.append(port)
        self.ports.append(p)

    def _header(self, name: str, value) -> None:
        self.header_bytes += name.encode()
        self.header_ends.append(len(self.header_bytes))
        self.header_bytes += _as_bytes(value)
        self.header_ends.append(len(self.header_bytes))

    def _mark(self):
        return (len(self.keys), len(self.values), len(self.header_bytes),
                len(self.header_ends), len(self.inputs))

    def _rollback(self, mark) -> None:
        k, v, hb, he, n = mark
        del self.keys[k:], self.values[v:], self.header_bytes[hb:], self.header_ends[he:]
        del self.key_ends[n:], self.value_ends[n:], self.flags[n:], self.timestamps[n:]
        del self.record_header_ends[n:], self.inputs[n:], self.ports[n:]

    def _finish(self, errors) -> Any:
        n = len(self.inputs)
        outputs = _host.Batch(
            _host.Origin("", "", 0, 0), [0] * n, [], bytes(self.flags), bytes(self.keys),
            self.key_ends, bytes(self.values), self.value_ends, self.timestamps,
            bytes(self.header_bytes), self.header_ends, self.record_header_ends,
        )
        return _host.TransformResult(outputs, self.inputs, self.port_names, self.ports, errors)


def _message(e: BaseException) -> str:
    if isinstance(e, Error):
        return str(e)
    return f"{type(e).__name__}: {e}"


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
            raise _host.init_error(False, _message(e)) from None
        self.config = config

    def filter(self, batch):
        fn, config, errors = self.fn, self.config, []
        n = len(batch.timestamps)
        keep = bytearray(n)
        for i in range(n):
            try:
                if fn(Record(batch, i), config):
                    keep[i] = 1
            except Exception as e:
                errors.append(_host.RecordError(i, _message(e)))
        return _host.FilterResult(bytes(keep), errors)

    def transform(self, batch):
        fn, config, out, errors = self.fn, self.config, Output(), []
        args = (config, out, self.tables) if self.kind == "join" else (config, out)
        for i in range(len(batch.timestamps)):
            out._input = i
            mark = out._mark()
            try:
                fn(Record(batch, i), *args)
            except Exception as e:
                out._rollback(mark)
                errors.append(_host.RecordError(i, _message(e)))
        return out._finish(errors)


def _export(kind: str, fn: Callable, config, setup, tables) -> Callable:
    plugin = _Plugin(kind, fn, config, setup, tables)
    fn.plugin = plugin
    module = sys.modules[fn.__module__]
    if kind == "filter":

        class FilterApi:
            def init(self, config: str) -> None:
                plugin.init(config)

            def filter(self, input):
                return plugin.filter(input)

        module.FilterApi = FilterApi
    else:

        class TransformApi:
            def init(self, config: str) -> None:
                plugin.init(config)

            def transform(self, input):
                return plugin.transform(input)

        module.TransformApi = TransformApi
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
