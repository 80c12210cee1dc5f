"""Labels each record from table `table` by its key (header `label`); keys
the table does not have get `default`."""

from dataclasses import dataclass

import sluice_sdk as sluice


@dataclass
class Config:
    """`[plugins.NAME.config]`; unknown and missing keys are refused."""

    table: str
    default: str

    def __post_init__(self):
        # Opened once per instance; a table the stage does not declare
        # refuses to start, naming it.
        self.labels = sluice.table(self.table)


@sluice.join(config=Config)
def label(record: sluice.Record, config: Config, out: sluice.Output, tables) -> None:
    found = config.labels.get(record.key) if record.has_key else None
    out.emit(record, headers={"label": found if found is not None else config.default})
