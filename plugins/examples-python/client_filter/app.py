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


def client_id(record: sluice.Record, config: Config) -> Optional[str]:
    if config.field is None:
        return record.key_str
    value = record.json()
    if not isinstance(value, dict):
        raise sluice.Error("value is not a JSON object")
    v = value.get(config.field)
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


@sluice.filter(config=Config)
def keep(record: sluice.Record, config: Config) -> bool:
    id = client_id(record, config)
    if id is None:
        return False
    any_client = not config.clients and not config.patterns
    listed = any_client or id in config.clients or any(
        sluice.glob_match(p, id) for p in config.patterns
    )
    return listed and (not config.only_connected or sluice.connected(id))
