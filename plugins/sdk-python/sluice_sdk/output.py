"""Where a transform writes its records: one flat output batch per call."""

import json as _json
from array import array
from typing import Any, List, Optional

from . import _host
from .batch import FLAG_HAS_KEY, FLAG_NULL_VALUE, Record

KEEP = object()
"""Default of `Output.emit`'s `key` and `value`: the input record's own."""


def _as_bytes(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    if isinstance(value, str):
        return value.encode()
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Output:
    """Where a transform writes its records for one batch, in flat form."""

    def __init__(self):
        self.keys = bytearray()
        self.key_ends = array("I")
        self.values = bytearray()
        self.value_ends = array("I")
        self.flags = bytearray()
        self.timestamps = array("q")
        self.header_bytes = bytearray()
        self.header_ends = array("I")
        self.record_header_ends = array("I")
        self.inputs = array("I")
        self.ports = array("I")
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
        """The result for the host: packed bytes in a `packed-*` world,
        lists of integers in the others."""
        col = array.tobytes if _host.PACKED else array.tolist
        outputs = _host.Batch(
            _host.Origin("", "", 0, 0), col(array("Q", bytes(8 * len(self.inputs)))),
            col(array("Q")), bytes(self.flags), bytes(self.keys), col(self.key_ends),
            bytes(self.values), col(self.value_ends), col(self.timestamps),
            bytes(self.header_bytes), col(self.header_ends), col(self.record_header_ends),
        )
        return _host.TransformResult(
            outputs, col(self.inputs), self.port_names, col(self.ports), errors
        )
