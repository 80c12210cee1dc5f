//! The answer to a batched table lookup (`tables.get-many`).

/// The values of many keys, in the keys' order: the answer to a table's
/// `get-many` (`Table::get_many` in the SDK).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// One byte per key: 1 found, 0 not.
    pub found: Vec<u8>,
    /// The values found, concatenated.
    pub values: Vec<u8>,
    /// End offset of each key's value in `values`.
    pub value_ends: Vec<u32>,
}

impl Lookup {
    /// How many keys were looked up.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether no keys were looked up.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Looks up every key of `keys` (key `i` ends at `key_ends[i]`) with
    /// `get`. `None` when `key_ends` does not fit `keys` or the values pass
    /// 4 GiB. The host and the native test tables both answer `get-many`
    /// with it.
    #[doc(hidden)]
    pub fn build<V: AsRef<[u8]>>(
        keys: &[u8],
        key_ends: &[u32],
        mut get: impl FnMut(&[u8]) -> Option<V>,
    ) -> Option<Self> {
        let mut lookup = Self {
            found: Vec::with_capacity(key_ends.len()),
            values: Vec::new(),
            value_ends: Vec::with_capacity(key_ends.len()),
        };
        let mut start = 0;
        for &end in key_ends {
            let key = keys.get(start..end as usize)?;
            start = end as usize;
            match get(key) {
                Some(v) => {
                    lookup.found.push(1);
                    lookup.values.extend_from_slice(v.as_ref());
                }
                None => lookup.found.push(0),
            }
            lookup
                .value_ends
                .push(u32::try_from(lookup.values.len()).ok()?);
        }
        Some(lookup)
    }

    /// The value of key `i`, if it was found.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if *self.found.get(i)? != 1 {
            return None;
        }
        let start = match i {
            0 => 0,
            _ => *self.value_ends.get(i - 1)? as usize,
        };
        let end = *self.value_ends.get(i)? as usize;
        self.values.get(start..end)
    }
}
