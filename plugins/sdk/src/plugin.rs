//! The traits plugin authors implement, and the loops that drive them.

use serde::de::DeserializeOwned;

use crate::outcome::Error;
use crate::output::Output;
use sluice_format::{FilterOutcome, FlatBatch, InitError, Record, RecordError, TransformOutcome};

/// Keeps or drops records.
///
/// ```
/// use sluice_sdk::{Filter, InitError, Record, Error};
///
/// #[derive(serde::Deserialize)]
/// struct Config { min_len: usize }
///
/// struct LongEnough(usize);
///
/// impl Filter for LongEnough {
///     type Config = Config;
///     fn init(config: Config) -> Result<Self, InitError> {
///         Ok(Self(config.min_len))
///     }
///     fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
///         Ok(record.value().len() >= self.0)
///     }
/// }
/// ```
pub trait Filter: Sized + 'static {
    /// The stage's `config` table, deserialized.
    type Config: DeserializeOwned;

    /// Builds the filter from its config. Called once per instance.
    fn init(config: Self::Config) -> Result<Self, InitError>;

    /// Whether `record` continues down the route. An `Err` sends the record
    /// to the stage's `on_error` policy.
    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error>;
}

/// Maps each record to zero or more output records.
pub trait Transform: Sized + 'static {
    /// The stage's `config` table, deserialized.
    type Config: DeserializeOwned;

    /// Builds the transform from its config. Called once per instance.
    fn init(config: Self::Config) -> Result<Self, InitError>;

    /// Called with each batch before its records, for work best done once
    /// per batch, such as looking up every record's key in a table with one
    /// [`crate::tables::Table::get_many`]. [`Record::index`] then finds a
    /// record's share. Does nothing unless implemented.
    fn begin_batch(&mut self, batch: &FlatBatch) {
        let _ = batch;
    }

    /// Writes the outputs for `record` into `out`. An `Err` discards what this
    /// call wrote and sends the record to the stage's `on_error` policy.
    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error>;
}

/// A `Config` for plugins that take none: accepts only an empty table.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Deserializes the stage config (JSON, as the host sends it) into `T`,
/// naming the offending key on error.
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, InitError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            InitError::InvalidConfig(inner.to_string())
        } else {
            InitError::InvalidConfig(format!("config.{path}: {inner}"))
        }
    })
}

/// Runs `filter` over every record of `batch`.
pub fn run_filter<F: Filter>(filter: &mut F, batch: &FlatBatch) -> FilterOutcome {
    let mut outcome = FilterOutcome {
        keep: Vec::with_capacity(batch.len()),
        errors: Vec::new(),
    };
    for record in batch.records() {
        match filter.keep(&record) {
            Ok(keep) => outcome.keep.push(u8::from(keep)),
            Err(e) => {
                outcome.keep.push(0);
                outcome.errors.push(RecordError {
                    index: index_u32(record.index()),
                    message: e.to_string(),
                });
            }
        }
    }
    outcome
}

/// Runs `transform` over every record of `batch`.
pub fn run_transform<T: Transform>(transform: &mut T, batch: &FlatBatch) -> TransformOutcome {
    let mut out = Output::sized_for(batch);
    transform.begin_batch(batch);
    for record in batch.records() {
        let mark = out.begin_input(index_u32(record.index()));
        if let Err(e) = transform.transform(&record, &mut out) {
            out.fail_input(mark, e.to_string());
        }
    }
    out.finish()
}

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[allow(dead_code)]
        names: Vec<String>,
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = parse_config::<Cfg>(r#"{"names": ["a", 3]}"#).unwrap_err();
        let InitError::InvalidConfig(m) = e else {
            panic!("wrong variant")
        };
        assert!(m.starts_with("config.names[1]:"), "{m}");
        let e = parse_config::<Cfg>(r#"{"nams": []}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `nams`"), "{e}");
        parse_config::<NoConfig>("{}").unwrap();
        assert!(parse_config::<NoConfig>(r#"{"x":1}"#).is_err());
    }
}
