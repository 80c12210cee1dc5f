//! What the Redis parts share: connections that come back after Redis goes
//! away ([`conn`]), and stream entry ids and the mapping between stream
//! entries and records ([`entry`]), and where and how to connect
//! (`url.rs`: [`RedisUrl`], with TLS files and ACL credentials).

mod conn;
mod entry;
mod url;

pub use conn::*;
pub use entry::*;
pub use url::RedisUrl;
