//! `${VAR}` / `${VAR:-default}` / `$$` substitution in config text
//! (`config::interpolate`).
//!
//! Input: the text, then optionally a NUL and what every set variable
//! holds. Names starting with an ASCII capital letter are set, all others
//! unset, so both the value and the default paths are reached.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::config::interpolate;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, value) = input.split_once('\0').unwrap_or((input, "set"));
    let lookup = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_uppercase())
            .then(|| value.to_owned())
    };
    match interpolate(text, lookup) {
        Ok(out) => {
            // Without `{` nothing is a reference: only `$$` changes.
            if !text.contains('{') {
                assert_eq!(out, text.replace("$$", "$"));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without a message");
            let lines = text.split_inclusive('\n').count().max(1);
            for e in &errors {
                let line: usize = e
                    .strip_prefix("line ")
                    .and_then(|rest| rest.split_once(':'))
                    .and_then(|(n, _)| n.parse().ok())
                    .unwrap_or_else(|| panic!("error without its line: {e}"));
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
        }
    }
});
