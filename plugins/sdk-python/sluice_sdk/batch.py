"""The batch the host sent, and views of its records.

The host sends a batch in flat, columnar form (wit/types.wit): one byte
buffer per field for every record, and end offsets to find each record's
part. In the `packed-*` worlds (wit/packed.wit) the offset columns arrive
as little-endian bytes, one `bytes` object each, which is what keeps the
boundary cheap in Python: `Batch` decodes a column with one C call
(`memoryview.cast(...).tolist()`) the first time it is needed, and every
record's field after that is a slice.
"""

import json as _json
from typing import Any, List, Optional, Tuple

FLAG_HAS_KEY = 1
FLAG_NULL_VALUE = 2


class Error(Exception):
    """One record could not be handled; the message is for an operator."""


def message(e: BaseException) -> str:
    """What a record's error says about exception `e`: an `Error`'s own
    message, or any other exception's type and message."""
    if isinstance(e, Error):
        return str(e)
    return f"{type(e).__name__}: {e}"


def ints(column, code: str) -> list:
    """An integer column as a list: decoded from packed little-endian bytes
    (`code` is the `struct` letter: I for u32, Q for u64, q for s64), or
    as it is when the world sent a list."""
    if isinstance(column, (bytes, bytearray, memoryview)):
        return memoryview(column).cast(code).tolist()
    return column


def _bounds(ends: list) -> Tuple[list, list]:
    starts = [0]
    starts += ends
    del starts[-1]
    return starts, ends


class Batch:
    """One batch, read in place: `len(batch)`, `batch[i]` (a `Record`),
    iteration, and whole columns (`key_strs()`, `keys()`, `values()`) for
    plugins that work a column at a time."""

    __slots__ = (
        "raw", "origin", "flags", "_keys", "_values", "_key_strs", "_value_bounds",
        "_timestamps", "_offsets", "_headers", "errors",
    )

    def __init__(self, raw):
        self.raw = raw
        self.origin = raw.origin
        self.flags = raw.record_flags
        self._keys = self._values = self._key_strs = self._value_bounds = None
        self._timestamps = self._offsets = self._headers = None
        self.errors: List[Tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.flags)

    def __getitem__(self, i: int) -> "Record":
        if not 0 <= i < len(self.flags):
            raise IndexError(i)
        return Record(self, i)

    def __iter__(self):
        for i in range(len(self.flags)):
            yield Record(self, i)

    def fail(self, index: int, message: str) -> None:
        """Fails record `index` with `message` (the stage's `on_error` policy
        handles it), from a batch function (`@filter_batch`)."""
        if not 0 <= index < len(self.flags):
            raise IndexError(index)
        self.errors.append((index, message))

    def map(self, fn) -> list:
        """`[fn(record) for record in batch]`, except that an exception from
        `fn` fails that record (`fail`) and gives None in its place."""
        out = []
        for i in range(len(self.flags)):
            try:
                out.append(fn(Record(self, i)))
            except Exception as e:
                self.errors.append((i, message(e)))
                out.append(None)
        return out

    def keys(self) -> List[Optional[bytes]]:
        """Every record's key as bytes; None where a record has no key."""
        if self._keys is None:
            raw, flags = self.raw.keys, self.flags
            starts, ends = _bounds(ints(self.raw.key_ends, "I"))
            self._keys = [
                raw[a:b] if f & FLAG_HAS_KEY else None for a, b, f in zip(starts, ends, flags)
            ]
        return self._keys

    def key_strs(self) -> List[Optional[str]]:
        """Every record's key as UTF-8 text; None without a key or where it is
        not UTF-8."""
        if self._key_strs is None:
            raw, flags = self.raw.keys, self.flags
            starts, ends = _bounds(ints(self.raw.key_ends, "I"))
            if raw.isascii():  # one decode, and str slices after it
                text = raw.decode("ascii")
                self._key_strs = [
                    text[a:b] if f & FLAG_HAS_KEY else None
                    for a, b, f in zip(starts, ends, flags)
                ]
            else:
                self._key_strs = [
                    _utf8(raw[a:b]) if f & FLAG_HAS_KEY else None
                    for a, b, f in zip(starts, ends, flags)
                ]
        return self._key_strs

    def value_bounds(self) -> Tuple[list, list]:
        """Start and end offsets of every record's value in `raw.values`."""
        if self._value_bounds is None:
            self._value_bounds = _bounds(ints(self.raw.value_ends, "I"))
        return self._value_bounds

    def values(self) -> List[bytes]:
        """Every record's value as bytes (empty for a null value)."""
        if self._values is None:
            raw = self.raw.values
            self._values = [raw[a:b] for a, b in zip(*self.value_bounds())]
        return self._values

    def timestamps(self) -> List[int]:
        """Every record's timestamp, in milliseconds since the Unix epoch."""
        if self._timestamps is None:
            self._timestamps = ints(self.raw.timestamps, "q")
        return self._timestamps

    def offsets(self) -> List[int]:
        """Every record's Kafka offset, or Redis entry id milliseconds."""
        if self._offsets is None:
            self._offsets = ints(self.raw.offsets, "Q")
        return self._offsets

    def header_bounds(self) -> Tuple[list, list]:
        """The header ends (two per header) and every record's header ends."""
        if self._headers is None:
            self._headers = (
                ints(self.raw.header_ends, "I"),
                ints(self.raw.record_header_ends, "I"),
            )
        return self._headers


def _utf8(b: bytes) -> Optional[str]:
    try:
        return b.decode()
    except UnicodeDecodeError:
        return None


class Record:
    """One record of a batch, read in place. Fields are decoded a column at
    a time for the whole batch, on first use."""

    __slots__ = ("_b", "index")

    def __init__(self, batch: Batch, index: int):
        self._b = batch
        self.index = index

    @property
    def has_key(self) -> bool:
        return bool(self._b.flags[self.index] & FLAG_HAS_KEY)

    @property
    def key(self) -> Optional[bytes]:
        """The key's bytes, or None when the record has no key."""
        b = self._b
        return (b._keys or b.keys())[self.index]

    @property
    def key_str(self) -> Optional[str]:
        """The key as UTF-8 text; None without a key or when it is not UTF-8."""
        b = self._b
        return (b._key_strs or b.key_strs())[self.index]

    @property
    def is_null(self) -> bool:
        """Whether the value is null (a Kafka tombstone)."""
        return bool(self._b.flags[self.index] & FLAG_NULL_VALUE)

    @property
    def value(self) -> memoryview:
        """The value's bytes (empty for a null value), as a view of the batch."""
        b = self._b
        starts, ends = b._value_bounds or b.value_bounds()
        i = self.index
        return memoryview(b.raw.values)[starts[i]:ends[i]]

    @property
    def value_str(self) -> str:
        """The value as UTF-8 text (raises for other bytes)."""
        b = self._b
        starts, ends = b._value_bounds or b.value_bounds()
        i = self.index
        return b.raw.values[starts[i]:ends[i]].decode()

    def json(self) -> Any:
        """The value parsed as JSON; raises `Error` naming the problem."""
        b = self._b
        starts, ends = b._value_bounds or b.value_bounds()
        i = self.index
        try:
            return _json.loads(b.raw.values[starts[i]:ends[i]])
        except ValueError as e:
            raise Error(f"value is not JSON: {e}") from None

    @property
    def timestamp(self) -> int:
        """Milliseconds since the Unix epoch."""
        return self._b.timestamps()[self.index]

    @property
    def offset(self) -> int:
        """The Kafka offset, or the milliseconds part of a Redis entry id."""
        return self._b.offsets()[self.index]

    @property
    def origin(self):
        """Where the batch came from: `.source`, `.topic`, `.partition`, `.db`."""
        return self._b.origin

    @property
    def headers(self) -> List[Tuple[str, bytes]]:
        """The headers as (name, value) pairs, in order."""
        b, i = self._b, self.index
        ends, record_ends = b.header_bounds()
        first, last = (record_ends[i - 1] if i else 0), record_ends[i]
        raw, out = b.raw.header_bytes, []
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
