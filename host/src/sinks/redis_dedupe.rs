//! `dedupe = true` on a `redis_stream` sink: a batch's records for one
//! stream go through one call of a Lua script that skips each record the
//! stream already has from the same source position, so an at-least-once
//! redelivery (after a crash, a rebalance or a rewind) is not written twice.
//!
//! Beside each stream, the hash `<stream>:sluice-positions` keeps, per
//! source partition (field `source|db|topic|partition`), the last position
//! written: `offset-sequence-index`, where `index` counts the outputs of
//! one input record. Positions only grow within a source partition, so a
//! record at or below the stored one is a redelivery. The script checks,
//! appends and updates the hash atomically; the entry itself keeps a
//! server-assigned (`*`) id, so streams fed by many partitions still work.

use redis::{Cmd, Pipeline, Value};

use crate::common::redis::EntryWriter;
use crate::record::{Origin, Position, Record};

/// One call per stream and batch. KEYS: stream, positions hash. ARGV: the
/// partition's field, maxlen (or ""), the fields and values of every
/// record, then four numbers per record (offset, sequence, index, how many
/// ARGV it has), then the number of records. Returns how many entries it
/// added; the others were duplicates.
const SCRIPT: &str = r"
local n = tonumber(ARGV[#ARGV])
local heads = #ARGV - 1 - 4 * n
local lo, ls, li = -1, -1, -1
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last then
  local a, b, c = string.match(last, '^(%d+)-(%d+)-(%d+)$')
  if a then lo, ls, li = tonumber(a), tonumber(b), tonumber(c) end
end
local added, at, newest = 0, 3, nil
for r = 0, n - 1 do
  local h = heads + 4 * r
  local o, s, i, len = tonumber(ARGV[h + 1]), tonumber(ARGV[h + 2]), tonumber(ARGV[h + 3]), tonumber(ARGV[h + 4])
  if o > lo or (o == lo and (s > ls or (s == ls and i > li))) then
    local args = {KEYS[1]}
    if ARGV[2] ~= '' then
      args[2] = 'MAXLEN'
      args[3] = '~'
      args[4] = ARGV[2]
    end
    args[#args + 1] = '*'
    for k = at, at + len - 1 do args[#args + 1] = ARGV[k] end
    redis.call('XADD', unpack(args))
    lo, ls, li = o, s, i
    newest = r
    added = added + 1
  end
  at = at + len
end
if newest then
  local h = heads + 4 * newest
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[h + 1] .. '-' .. ARGV[h + 2] .. '-' .. ARGV[h + 3])
end
return added
";

/// The suffix of the hash that holds a stream's source positions.
pub const POSITIONS_SUFFIX: &str = ":sluice-positions";

/// Builds the deduplicating calls of one batch: one script call per stream
/// (one HGET and one HSET of the positions per call, not per record).
pub(super) struct Dedupe {
    sha: String,
    /// The calls of the batch being built, by stream, in first-use order.
    calls: Vec<Call>,
    by_stream: std::collections::HashMap<String, usize>,
    /// The last record's position, and its output index.
    last: Option<(Position, u64)>,
}

struct Call {
    cmd: Cmd,
    /// Offset, sequence, index and argument count of each record.
    heads: Vec<u64>,
}

impl Dedupe {
    pub(super) fn new() -> Self {
        Self {
            sha: script_sha(),
            calls: Vec::new(),
            by_stream: std::collections::HashMap::new(),
            last: None,
        }
    }

    /// Starts a batch, dropping what a failed one left.
    pub(super) fn begin(&mut self) {
        self.calls.clear();
        self.by_stream.clear();
        self.last = None;
    }

    /// Adds `record` to the call for `stream`.
    pub(super) fn add(
        &mut self,
        stream: &str,
        maxlen: Option<u64>,
        writer: &EntryWriter,
        record: &Record<'_>,
    ) -> Result<(), String> {
        let position = record.position();
        // Outputs of one input share its position; they are told apart by
        // their order, which a redelivery repeats.
        let index = match self.last {
            Some((p, i)) if p == position => i + 1,
            _ => 0,
        };
        self.last = Some((position, index));
        let at = match self.by_stream.get(stream) {
            Some(&at) => at,
            None => {
                let mut cmd = Cmd::new();
                cmd.arg("EVALSHA")
                    .arg(&self.sha)
                    .arg(2)
                    .arg(stream)
                    .arg(format!("{stream}{POSITIONS_SUFFIX}"))
                    .arg(partition_field(record.origin()));
                match maxlen {
                    Some(n) => cmd.arg(n),
                    None => cmd.arg(""),
                };
                self.calls.push(Call {
                    cmd,
                    heads: Vec::new(),
                });
                self.by_stream
                    .insert(stream.to_owned(), self.calls.len() - 1);
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at];
        let before = call.cmd.args_iter().len();
        writer.write(record, &mut call.cmd)?;
        let len = call.cmd.args_iter().len() - before;
        call.heads
            .extend([position.offset, position.sequence, index, len as u64]);
        Ok(())
    }

    /// Appends the batch's calls to `pipe`, after loading the script (a
    /// no-op when Redis has it, so a restarted or flushed server never
    /// answers NOSCRIPT).
    pub(super) fn finish(&mut self, pipe: &mut Pipeline) {
        pipe.cmd("SCRIPT").arg("LOAD").arg(SCRIPT);
        for mut call in self.calls.drain(..) {
            for &h in &call.heads {
                call.cmd.arg(h);
            }
            call.cmd.arg(call.heads.len() / 4);
            pipe.add_command(call.cmd);
        }
        self.begin();
    }
}

/// The script's name for EVALSHA: the hex SHA-1 of its text.
fn script_sha() -> String {
    sha1_hex(SCRIPT.as_bytes())
}

fn sha1_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .iter()
        .fold(String::with_capacity(40), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The positions hash field of a source partition.
fn partition_field(origin: &Origin) -> String {
    format!(
        "{}|{}|{}|{}",
        origin.source, origin.db, origin.topic, origin.partition
    )
}

/// How many of a batch's `records` its calls' replies say were duplicates.
pub(super) fn duplicates(records: u64, replies: &[Value]) -> u64 {
    // The first reply is SCRIPT LOAD's; each other is a call's added count.
    let added: u64 = replies
        .iter()
        .skip(1)
        .map(|v| match v {
            Value::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
        .sum();
    records.saturating_sub(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_named_by_the_hex_sha1_of_their_text() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn duplicates_are_the_records_no_call_added() {
        let sha = Value::SimpleString(script_sha());
        let replies = [sha, Value::Int(3), Value::Int(0), Value::Int(2)];
        assert_eq!(duplicates(10, &replies), 5);
        assert_eq!(
            duplicates(4, &[Value::Int(4)]),
            4,
            "the load's reply is skipped"
        );
    }
}
