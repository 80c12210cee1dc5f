"""Keeps the records whose key starts with `prefix`."""

from dataclasses import dataclass

import sluice_sdk as sluice


@dataclass
class Config:
    """`[plugins.NAME.config]`; unknown and missing keys are refused."""

    prefix: str

    def __post_init__(self):
        if not self.prefix:
            raise sluice.InvalidConfig("config.prefix: must not be empty")


@sluice.filter(config=Config)
def keep(record: sluice.Record, config: Config) -> bool:
    key = record.key_str
    return key is not None and key.startswith(config.prefix)
