//! The host side of `sluice:plugin/sets`: byte-string sets a plugin builds
//! once and tests whole columns against, one call per batch.

use std::collections::HashSet;

use wasmtime::Result as WasmResult;
use wasmtime::component::Resource;

use super::bindings::sets;
use super::host::StoreState;

/// One `byte-set` a plugin has made.
#[derive(Debug)]
pub struct ByteSet {
    members: HashSet<Box<[u8]>>,
    /// Member bytes, counted against the instance's memory limit.
    bytes: usize,
}

impl ByteSet {
    /// The set of `members`, and what it holds in bytes (each member's
    /// length plus a fixed cost per member for its slot).
    fn new(members: Vec<Vec<u8>>) -> Self {
        let members: HashSet<Box<[u8]>> = members.into_iter().map(Vec::into_boxed_slice).collect();
        let bytes = members.iter().map(|m| m.len() + 32).sum();
        Self { members, bytes }
    }

    /// One byte per item of `items` cut at `ends`: 1 for a member. `None`
    /// when `ends` does not fit `items` or `flags` is neither empty nor one
    /// byte per item.
    fn contains_many(&self, items: &[u8], ends: &[u32], flags: &[u8]) -> Option<Vec<u8>> {
        if !flags.is_empty() && flags.len() != ends.len() {
            return None;
        }
        let mut out = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for (i, &end) in ends.iter().enumerate() {
            let end = end as usize;
            let item = items.get(start..end)?;
            start = end;
            let present = flags.get(i).is_none_or(|f| f & 1 != 0);
            out.push(u8::from(present && self.members.contains(item)));
        }
        Some(out)
    }
}

impl sets::Host for StoreState {}

impl sets::HostByteSet for StoreState {
    fn new(&mut self, members: Vec<Vec<u8>>) -> WasmResult<Resource<ByteSet>> {
        let set = ByteSet::new(members);
        let held = self.set_bytes.saturating_add(set.bytes);
        if held > self.limiter.max_memory {
            self.limiter.hit = true;
            return Err(wasmtime::format_err!(
                "byte-set: the instance's sets would hold {held} bytes, more than its memory limit of {} bytes",
                self.limiter.max_memory
            ));
        }
        self.set_bytes = held;
        Ok(self.resources().push(set)?)
    }

    fn contains(&mut self, set: Resource<ByteSet>, item: Vec<u8>) -> WasmResult<bool> {
        Ok(self
            .resources()
            .get(&set)?
            .members
            .contains(item.as_slice()))
    }

    fn contains_many(
        &mut self,
        set: Resource<ByteSet>,
        items: Vec<u8>,
        ends: Vec<u32>,
        present: Vec<u8>,
    ) -> WasmResult<Vec<u8>> {
        self.resources()
            .get(&set)?
            .contains_many(&items, &ends, &present)
            .ok_or_else(|| {
                wasmtime::format_err!(
                    "byte-set.contains-many: {} ends do not fit {} item bytes, or present has {} bytes (not 0 or one per item)",
                    ends.len(),
                    items.len(),
                    present.len()
                )
            })
    }

    fn drop(&mut self, set: Resource<ByteSet>) -> WasmResult<()> {
        let set = self.resources().delete(set)?;
        self.set_bytes = self.set_bytes.saturating_sub(set.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> ByteSet {
        ByteSet::new(members.iter().map(|m| m.as_bytes().to_vec()).collect())
    }

    #[test]
    fn tests_a_column_cut_at_its_ends() {
        let s = set(&["client-1", "client-3", ""]);
        let items = b"client-1client-2client-3";
        assert_eq!(
            s.contains_many(items, &[8, 16, 24], &[]),
            Some(vec![1, 0, 1])
        );
        // An empty item is a member here, but not when its flag says "no key".
        assert_eq!(
            s.contains_many(items, &[8, 8, 16, 24], &[1, 0, 1, 1]),
            Some(vec![1, 0, 0, 1])
        );
        assert_eq!(s.contains_many(items, &[8, 8], &[1, 1]), Some(vec![1, 1]));
        assert_eq!(s.contains_many(b"", &[], &[]), Some(vec![]));
    }

    #[test]
    fn refuses_ends_or_flags_that_do_not_fit() {
        let s = set(&["a"]);
        assert_eq!(s.contains_many(b"ab", &[1, 3], &[]), None, "past the end");
        assert_eq!(s.contains_many(b"ab", &[2, 1], &[]), None, "going back");
        assert_eq!(s.contains_many(b"ab", &[1, 2], &[1]), None, "flags short");
    }

    #[test]
    fn counts_each_member_once() {
        let s = set(&["abc", "abc", "de"]);
        assert_eq!(s.members.len(), 2);
        assert_eq!(s.bytes, 3 + 2 + 64);
    }
}
