"""What the host provides: the generated bindings inside a component, or
in-process stand-ins when the SDK runs natively (under pytest).

componentize-py generates the `wit_world` package at build time. Natively it
does not exist, and `sluice_sdk.testing` drives the stand-ins below.
"""

from dataclasses import dataclass, field
from typing import List, Optional
import sys

try:  # inside a component
    from wit_world.imports import types as _types
    from wit_world.imports import log as _log
    from wit_world.imports import presence as _presence
    from wit_world.imports import state as _state
    from componentize_py_types import Err as _Err

    NATIVE = False
    Origin = _types.Origin
    RecordError = _types.RecordError
    FilterResult = _types.FilterResult
    try:  # a `packed-*` world: integer columns as little-endian bytes
        from wit_world.imports import packed_types as _packed

        PACKED = True
        Batch = _packed.PackedBatch
        TransformResult = _packed.PackedTransformResult
    except ImportError:  # `filter`, `transform`, `join`: lists of integers
        PACKED = False
        Batch = _types.Batch
        TransformResult = _types.TransformResult

    def init_error(invalid: bool, message: str) -> BaseException:
        cls = _types.InitError_InvalidConfig if invalid else _types.InitError_Failed
        return _Err(cls(message))

    _LEVELS = {
        "trace": _log.Level.TRACE,
        "debug": _log.Level.DEBUG,
        "info": _log.Level.INFO,
        "warn": _log.Level.WARN,
        "error": _log.Level.ERROR,
    }

    def log(level: str, message: str) -> None:
        _log.log(_LEVELS[level], message)

    connected = _presence.connected

    def state_get(key: bytes) -> Optional[bytes]:
        return _state.get(key)

    def state_put(key: bytes, value: bytes) -> None:
        try:
            _state.put(key, value)
        except _Err as e:
            raise StateFull(getattr(e.value, "value", str(e.value))) from None

    state_delete = _state.delete

    def open_table(name: str):
        from wit_world.imports import tables as _tables  # only in the join world

        try:
            return _tables.Table.open(name)
        except _Err as e:
            raise TableError(getattr(e.value, "value", str(e.value))) from None

except ImportError:  # natively, under pytest
    NATIVE = True
    PACKED = True
    """Natively, whether batches are packed (as in a `packed-*` world);
    `sluice_sdk.testing.use_packed` switches."""

    @dataclass
    class Origin:
        source: str = "test"
        topic: str = "test"
        partition: int = 0
        db: int = 0

    @dataclass
    class Batch:
        """A batch in either form: integer columns as packed bytes
        (PACKED) or as lists."""

        origin: Origin
        offsets: List[int]
        sequences: List[int]
        record_flags: bytes
        keys: bytes
        key_ends: List[int]
        values: bytes
        value_ends: List[int]
        timestamps: List[int]
        header_bytes: bytes
        header_ends: List[int]
        record_header_ends: List[int]

    @dataclass
    class RecordError:
        index: int
        message: str

    @dataclass
    class FilterResult:
        keep: bytes
        errors: List[RecordError]

    @dataclass
    class TransformResult:
        outputs: Batch
        inputs: List[int]
        port_names: List[str]
        ports: List[int]
        errors: List[RecordError]

    class NativeInitError(Exception):
        """What `init` raises natively: `invalid` is True for a bad config."""

        def __init__(self, invalid: bool, message: str):
            super().__init__(message)
            self.invalid = invalid
            self.message = message

    def init_error(invalid: bool, message: str) -> BaseException:
        return NativeInitError(invalid, message)

    LOGS: list = []
    CONNECTED: set = set()
    STATE: dict = {}
    STATE_LIMIT: List[Optional[int]] = [None]
    TABLES: dict = {}

    def log(level: str, message: str) -> None:
        LOGS.append((level, message))
        print(f"[{level}] {message}", file=sys.stderr)

    def connected(client: str) -> bool:
        return client in CONNECTED

    def state_get(key: bytes) -> Optional[bytes]:
        return STATE.get(bytes(key))

    def state_put(key: bytes, value: bytes) -> None:
        limit = STATE_LIMIT[0]
        if limit is not None:
            size = sum(len(k) + len(v) for k, v in STATE.items() if k != key)
            if size + len(key) + len(value) > limit:
                raise StateFull(f"state would exceed its limit of {limit} bytes")
        STATE[bytes(key)] = bytes(value)

    def state_delete(key: bytes) -> None:
        STATE.pop(bytes(key), None)

    @dataclass
    class Lookup:
        found: bytes
        values: bytes
        value_ends: List[int]

    @dataclass
    class _NativeTable:
        rows: dict = field(default_factory=dict)

        def get(self, key: bytes) -> Optional[bytes]:
            return self.rows.get(bytes(key))

        def get_many(self, keys: bytes, key_ends: List[int]) -> "Lookup":
            found, values, ends, start = bytearray(), bytearray(), [], 0
            for end in key_ends:
                v = self.rows.get(bytes(keys[start:end]))
                found.append(0 if v is None else 1)
                values += v or b""
                ends.append(len(values))
                start = end
            return Lookup(bytes(found), bytes(values), ends)

    def open_table(name: str):
        if name not in TABLES:
            raise TableError(f"no table `{name}` is declared for this stage")
        return _NativeTable(TABLES[name])


class StateFull(Exception):
    """A state write would take the plugin past its `state_limit`."""


class TableError(Exception):
    """A table could not be opened (not declared, or unavailable)."""
