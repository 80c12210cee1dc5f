"""Keeps records whose client id is in a set or matches a pattern: the
Python twin of the Rust `client-filter` plugin (same config, same outputs).

The client id is the record key, or a top-level JSON field of the value when
`field` is set. Records without an id are dropped. With `only_connected`, a
record is kept only while its client has an SSE connection open.
"""

import json
from dataclasses import dataclass, field as _field
from typing import List, Optional

import sluice_sdk as sluice


@dataclass
class Config:
    clients: List[str] = _field(default_factory=list)
    patterns: List[str] = _field(default_factory=list)
    field: Optional[str] = None
    only_connected: bool = False

    def __post_init__(self):
        if not self.clients and not self.patterns and not self.only_connected:
            raise sluice.InvalidConfig(
                "config: set `clients`, `patterns` or `only_connected`, or every record is dropped"
            )
        self.clients = frozenset(self.clients)
        self.any_client = not self.clients and not self.patterns


def client_id(record: sluice.Record, config: Config) -> Optional[str]:
    value = record.json()
    if not isinstance(value, dict):
        raise sluice.Error("value is not a JSON object")
    v = value.get(config.field)
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def keep_one(record: sluice.Record, config: Config) -> bool:
    id = record.key_str if config.field is None else client_id(record, config)
    if id is None:
        return False
    if not (config.any_client or id in config.clients
            or (config.patterns and any(sluice.glob_match(p, id) for p in config.patterns))):
        return False
    return not config.only_connected or sluice.connected(id)


@sluice.filter_batch(config=Config)
def keep(batch: sluice.Batch, config: Config):
    if config.field is None and not config.patterns and not config.only_connected:
        # The common case is one set lookup per key, which a comprehension
        # over the key column does at C speed: no Python call per record.
        clients = config.clients
        return [k in clients for k in batch.key_strs()]
    return batch.map(lambda record: keep_one(record, config))
