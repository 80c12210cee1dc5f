"""Projects and renames top-level JSON fields, and adds headers: the Python
twin of the Rust `json-transform` plugin (same config, same outputs).

Output values hold only the listed `fields`, in that order, each under its
`rename`d name. Missing fields are left out. Key and timestamp are kept;
`headers` are added to the record's own.
"""

from dataclasses import dataclass, field
from typing import Dict, List

import sluice_sdk as sluice


@dataclass
class Config:
    fields: List[str]
    rename: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for old in self.rename:
            if old not in self.fields:
                raise sluice.InvalidConfig(f"config.rename.{old}: `{old}` is not one of `fields`")
        self.pairs = [(f, self.rename.get(f, f)) for f in self.fields]


@sluice.transform(config=Config)
def project(record: sluice.Record, config: Config, out: sluice.Output) -> None:
    value = record.json()
    if not isinstance(value, dict):
        raise sluice.Error("value is not a JSON object")
    projected = {new: value[old] for old, new in config.pairs if old in value}
    out.emit(record, projected, headers=config.headers)
