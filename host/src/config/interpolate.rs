//! `${VAR}` and `${VAR:-default}` substitution in config text.
//!
//! Substitution happens on the raw text before TOML parsing, so a variable
//! can fill any value: write `"${KAFKA_BOOTSTRAP_SERVERS:-embedded}"` inside
//! quotes for strings. `$$` stands for a literal `$`.

/// Replaces every `${VAR}` / `${VAR:-default}` in `text` using `lookup`.
/// Reports every unset variable without a default, each with its line.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(close) = body.find('}') else {
                    errors.push(format!(
                        "line {}: `${{` without a closing `}}`",
                        line_no + 1
                    ));
                    out.push_str(&rest[i..]);
                    rest = "";
                    break;
                };
                let expr = &body[..close];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    errors.push(format!(
                        "line {}: `${{{expr}}}` is not a variable reference (use ${{NAME}} or ${{NAME:-default}})",
                        line_no + 1
                    ));
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => errors.push(format!(
                            "line {}: environment variable `{name}` is not set and has no default (write ${{{name}:-default}})",
                            line_no + 1
                        )),
                    }
                }
                rest = &body[close + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn substitutes_and_defaults() {
        let text = "a = \"${SET}\"\nb = \"${UNSET:-fallback}\"\nc = \"$$5 $x\"\nd = \"${SET:-no}\"";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "a = \"value\"\nb = \"fallback\"\nc = \"$5 $x\"\nd = \"value\""
        );
        assert_eq!(interpolate("${UNSET:-}", env).unwrap(), "");
    }

    #[test]
    fn reports_every_missing_variable_with_its_line() {
        let errors =
            interpolate("a = \"${A}\"\nb = \"${B}\" ${bad name}\n${open", env).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 1:") && errors[0].contains("`A`"));
        assert!(errors[1].starts_with("line 2:") && errors[1].contains("`B`"));
        assert!(errors[2].contains("not a variable reference"));
        assert!(errors[3].starts_with("line 3:"));
    }
}
