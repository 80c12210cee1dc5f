//! Fast reads of JSON record values.
//!
//! Routing and projection read a few top-level fields of each record. A full
//! parse (into `serde_json::Value`, or even serde's `IgnoredAny`) converts
//! every number and allocates for every key; that costs more than the rest of
//! a plugin put together. These helpers scan the top-level object once,
//! borrow everything from the input, and allocate nothing unless a string
//! has escapes.
//!
//! What is checked: the top-level object's grammar, string escapes, number
//! and literal syntax, and that nested objects and arrays are balanced.
//! Nested values are returned as raw JSON text; parse them with serde_json if
//! you need their insides.

use std::borrow::Cow;
use std::fmt;

/// Why a value is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSON object at byte {}: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for JsonError {}

/// The fields of a JSON object in their order: (key, raw JSON value).
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a [u8])>;

/// Every top-level field of the object `value`, in order.
pub fn fields(value: &[u8]) -> Result<Fields<'_>, JsonError> {
    let mut out = Vec::new();
    scan(value, |key, raw| {
        out.push((key.text()?, raw));
        Ok(())
    })?;
    Ok(out)
}

/// Reads the top-level fields `names` of the object `value` into `out`:
/// `out[i]` becomes field `names[i]`'s raw JSON, or stays `None`. The first
/// occurrence of a repeated key wins.
pub fn select<'a, S: AsRef<str>>(
    value: &'a [u8],
    names: &[S],
    out: &mut [Option<&'a [u8]>],
) -> Result<(), JsonError> {
    scan(value, |key, raw| {
        let slot = if key.escaped {
            let key = key.text()?;
            names.iter().position(|n| n.as_ref() == key)
        } else {
            names.iter().position(|n| n.as_ref().as_bytes() == key.raw)
        };
        let slot = slot.and_then(|i| out.get_mut(i));
        if let Some(slot @ None) = slot {
            *slot = Some(raw);
        }
        Ok(())
    })
}

/// The top-level field `name` of the object `value`, as text: a string's
/// contents, a number's or boolean's literal, or an object's or array's JSON.
/// `Ok(None)` when the field is missing or null.
pub fn field<'a>(value: &'a [u8], name: &str) -> Result<Option<Cow<'a, str>>, JsonError> {
    let mut found = [None];
    select(value, &[name], &mut found)?;
    match found[0] {
        Some(raw) => scalar_text(raw),
        None => Ok(None),
    }
}

/// A raw JSON value (as [`select`] returns it) as text; `None` for null.
pub fn scalar_text(raw: &[u8]) -> Result<Option<Cow<'_, str>>, JsonError> {
    let bad_utf8 = |_| JsonError {
        offset: 0,
        message: "text is not UTF-8",
    };
    match raw.first() {
        Some(b'"') => {
            let inner = &raw[1..raw.len().saturating_sub(1).max(1)];
            if inner.contains(&b'\\') {
                let text = std::str::from_utf8(raw).map_err(bad_utf8)?;
                serde_json::from_str::<String>(text)
                    .map(|s| Some(Cow::Owned(s)))
                    .map_err(|_| JsonError {
                        offset: 0,
                        message: "bad string escape",
                    })
            } else {
                std::str::from_utf8(inner)
                    .map(|s| Some(Cow::Borrowed(s)))
                    .map_err(bad_utf8)
            }
        }
        _ if raw == b"null" => Ok(None),
        _ => std::str::from_utf8(raw)
            .map(|s| Some(Cow::Borrowed(s)))
            .map_err(bad_utf8),
    }
}

/// Calls `each(key, raw_value)` for every top-level field of the object.
fn scan<'a>(
    input: &'a [u8],
    mut each: impl FnMut(RawKey<'a>, &'a [u8]) -> Result<(), JsonError>,
) -> Result<(), JsonError> {
    let mut s = Scanner { b: input, i: 0 };
    s.ws();
    s.expect(b'{', "expected `{`")?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let (start, end, escaped) = s.string()?;
            let key = RawKey {
                raw: &input[start..end],
                escaped,
                offset: start,
            };
            s.ws();
            s.expect(b':', "expected `:` after a key")?;
            s.ws();
            let (vs, ve) = s.value()?;
            each(key, &input[vs..ve])?;
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(s.err("expected `,` or `}`")),
            }
        }
    }
    s.ws();
    if s.i != input.len() {
        return Err(s.err("trailing characters after the object"));
    }
    Ok(())
}

/// A key as it appears in the input, between its quotes.
struct RawKey<'a> {
    raw: &'a [u8],
    escaped: bool,
    offset: usize,
}

impl<'a> RawKey<'a> {
    fn text(&self) -> Result<Cow<'a, str>, JsonError> {
        let bad = |message| JsonError {
            offset: self.offset,
            message,
        };
        if !self.escaped {
            return std::str::from_utf8(self.raw)
                .map(Cow::Borrowed)
                .map_err(|_| bad("key is not UTF-8"));
        }
        let mut quoted = Vec::with_capacity(self.raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(self.raw);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted)
            .map(Cow::Owned)
            .map_err(|_| bad("bad escape in key"))
    }
}

/// The first byte of `s` that ends a run of plain string text: `"`, `\`,
/// or a control character. Eight bytes per step (SWAR): a byte loop costs a
/// bounds check and, inside Wasm, an epoch check per byte.
fn find_special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes of `x` below `n` (n <= 128) get their high bit set. Borrows can
    // also flag bytes above a flagged one, never below it, so the lowest
    // flag is exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn err(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.i.min(self.b.len()),
            message,
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, message: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(message))
        }
    }

    /// A string starting at `"`: returns its contents' span and whether it
    /// has escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), JsonError> {
        self.expect(b'"', "expected a string")?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Jump to the next byte that needs a decision: most of a string
            // is plain text.
            let rest = self.b.get(self.i..).unwrap_or(&[]);
            let Some(k) = find_special(rest) else {
                self.i = self.b.len();
                return Err(self.err("unterminated string"));
            };
            self.i += k;
            match self.next() {
                Some(b'"') => return Ok((start, self.i - 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            for _ in 0..4 {
                                if !self.next().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(self.err("bad \\u escape"));
                                }
                            }
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                _ => return Err(self.err("control character in a string")),
            }
        }
    }

    /// Any value: returns its span.
    fn value(&mut self) -> Result<(usize, usize), JsonError> {
        let start = self.i;
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{' | b'[') => self.nested()?,
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.err("expected a value")),
        }
        Ok((start, self.i))
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("bad number: digits expected after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad number: digits expected in the exponent"));
            }
        }
        Ok(())
    }

    /// An object or array: skipped with strings honoured and brackets
    /// matched, without recursion (a hostile depth cannot blow the stack).
    fn nested(&mut self) -> Result<(), JsonError> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(c @ (b'{' | b'[')) => stack.push(if c == b'{' { b'}' } else { b']' }),
                Some(c @ (b'}' | b']')) => {
                    if stack.pop() != Some(c) {
                        return Err(self.err("mismatched bracket"));
                    }
                    if stack.is_empty() {
                        self.i += 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Err(self.err("unterminated object or array")),
            }
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_field_of_any_kind() {
        let v = br#" {"a":"x\"y","n":12,"o":{"k":["}",1]},"z":null, "b" : true } "#;
        assert_eq!(field(v, "a").unwrap().as_deref(), Some("x\"y"));
        assert_eq!(field(v, "n").unwrap().as_deref(), Some("12"));
        assert_eq!(field(v, "o").unwrap().as_deref(), Some(r#"{"k":["}",1]}"#));
        assert_eq!(field(v, "b").unwrap().as_deref(), Some("true"));
        assert_eq!(field(v, "z").unwrap(), None);
        assert_eq!(field(v, "missing").unwrap(), None);
        assert!(matches!(
            field(br#"{"a":"plain"}"#, "a").unwrap(),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        for bad in [
            &b"[1,2]"[..],
            b"not json",
            b"{\"a\":1} trailing",
            b"{\"a\":1",
            b"{\"a\" 1}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":tru}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":[1,{]}",
            b"{\"a\":\"unterminated}",
            b"{a:1}",
            b"{\"a\":1,}",
            b"",
        ] {
            assert!(
                field(bad, "a").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = field(b"{\"a\" 1}", "a").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.to_string().contains("expected `:`"), "{e}");
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for good in [
            &br#"{}"#[..],
            br#"{"a":-0.5e+10,"b":[],"c":{},"d":"\u00e9\n","e":false}"#,
            br#"{"k\"ey":1}"#,
        ] {
            serde_json::from_slice::<serde_json::Value>(good).unwrap();
            fields(good).unwrap();
        }
        let f = fields(br#"{"k\"ey":1,"x":"\u00e9"}"#).unwrap();
        assert_eq!(f[0].0, "k\"ey");
        assert_eq!(scalar_text(f[1].1).unwrap().as_deref(), Some("é"));
    }

    #[test]
    fn select_fills_slots_in_name_order() {
        let mut out = [None; 3];
        select(
            br#"{"b":2,"a":"x","c":[1],"b":9}"#,
            &["a", "b", "z"],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Some(&b"\"x\""[..]), Some(&b"2"[..]), None]);
        assert!(select(b"[1]", &["a"], &mut out).is_err());
    }

    #[test]
    fn find_special_agrees_with_a_byte_loop() {
        let naive = |s: &[u8]| s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        // A small deterministic generator, mostly plain text, sometimes one
        // of the interesting bytes or their neighbours.
        let special = [
            b'"', b'\\', 0x1f, 0x20, 0x21, 0x00, 0x7f, 0x80, 0xff, b'!', b'#', 0x5b, 0x5d,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..200 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        if state.is_multiple_of(5) {
                            special[(state >> 8) as usize % special.len()]
                        } else {
                            b'a' + ((state >> 16) % 26) as u8
                        }
                    })
                    .collect();
                assert_eq!(find_special(&s), naive(&s), "{s:?}");
            }
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            field(deep.as_bytes(), "a").unwrap().map(|s| s.len()),
            Some(200_000)
        );
    }
}
