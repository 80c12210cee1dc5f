//! What the Redis parts share: connections that come back after Redis goes
//! away ([`conn`]), and stream entry ids and the mapping between stream
//! entries and records ([`entry`]).

mod conn;
mod entry;

pub use conn::*;
pub use entry::*;
