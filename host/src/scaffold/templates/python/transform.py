"""Sends the records whose key starts with `prefix` to port `matched` with a
header `matched: yes`; the others pass through unchanged."""

from dataclasses import dataclass

import sluice_sdk as sluice


@dataclass
class Config:
    """`[plugins.NAME.config]`; unknown and missing keys are refused."""

    prefix: str


@sluice.transform(config=Config)
def tag(record: sluice.Record, config: Config, out: sluice.Output) -> None:
    key = record.key_str
    if key is not None and key.startswith(config.prefix):
        out.emit(record, headers={"matched": "yes"}, port="matched")
    else:
        out.forward(record)
