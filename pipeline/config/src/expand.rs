//! `${VAR}` and `${VAR:-default}` expansion in the raw topology text.
//!
//! In: the file's text and an environment. Out: the text with every reference
//! replaced, before YAML parsing, so a reference can supply a number as well
//! as a string. Rules:
//!
//! - `${VAR}` becomes the value of `VAR`; if `VAR` is not set, expansion fails
//!   with [`Error::UnsetVariable`] naming it (an empty value is used as is).
//! - `${VAR:-default}` becomes the value of `VAR` if it is set and not empty,
//!   otherwise `default` (which is taken literally up to the first `}`).
//! - `$${` is an escape and becomes a literal `${`; every other `$` (a lone
//!   `$`, `$$`, `$VAR`) is left alone.
//! - Lines whose first non-blank character is `#` are comments and left alone,
//!   so a comment may mention `${VAR}`. References in comments after a value
//!   (`key: value # ${VAR}`) are still expanded; escape them as `$${`.
//! - A reference must close on its own line; `VAR` must match
//!   `[A-Za-z_][A-Za-z0-9_]*`.
//!
//! Values are inserted verbatim: quote the reference (`password: "${PW}"`)
//! if a value may contain YAML syntax such as `: `, ` #` or a leading `*`.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Expands every reference in `text` from `env`.
pub(crate) fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            expand_line(line, index + 1, env, &mut out)?;
        }
    }
    Ok(out)
}

/// Expands the references in one line, appending the result to `out`.
fn expand_line(
    line: &str,
    number: usize,
    env: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<()> {
    let mut rest = line;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix("${") {
            let Some(close) = reference.find('}') else {
                return Err(expand_error(
                    number,
                    format!(
                        "`{}` is not closed by `}}` on the same line",
                        after.trim_end()
                    ),
                ));
            };
            let inner = &reference[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_variable_name(name) {
                return Err(expand_error(
                    number,
                    format!(
                        "`${{{inner}}}` does not name a variable \
                         (expected ${{NAME}} or ${{NAME:-default}} with NAME in [A-Za-z_][A-Za-z0-9_]*)"
                    ),
                ));
            }
            let value = match (env.get(name), default) {
                (Some(value), Some(_)) if !value.is_empty() => value.as_str(),
                (_, Some(default)) => default,
                (Some(value), None) => value.as_str(),
                (None, None) => {
                    return Err(Error::UnsetVariable {
                        name: name.to_owned(),
                        path: None,
                        line: number,
                    })
                }
            };
            out.push_str(value);
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(())
}

/// Whether `name` matches `[A-Za-z_][A-Za-z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A malformed reference on line `line`.
fn expand_error(line: usize, message: String) -> Error {
    Error::Expand {
        path: None,
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_is_used_when_unset_or_empty() {
        let text = "brokers: ${B:-127.0.0.1:9092}\n";
        assert_eq!(
            expand(text, &env(&[])).unwrap(),
            "brokers: 127.0.0.1:9092\n"
        );
        assert_eq!(
            expand(text, &env(&[("B", "")])).unwrap(),
            "brokers: 127.0.0.1:9092\n"
        );
        assert_eq!(
            expand(text, &env(&[("B", "kafka:9092")])).unwrap(),
            "brokers: kafka:9092\n"
        );
    }

    #[test]
    fn empty_default_is_allowed() {
        assert_eq!(expand("p: '${P:-}'", &env(&[])).unwrap(), "p: ''");
    }

    #[test]
    fn plain_reference_uses_the_value_even_when_empty() {
        let text = "a: ${A}/${B}";
        assert_eq!(
            expand(text, &env(&[("A", "x"), ("B", "")])).unwrap(),
            "a: x/"
        );
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = expand("a: 1\nb: ${SKEIN_NOT_SET}\n", &env(&[])).unwrap_err();
        match &err {
            Error::UnsetVariable { name, line, .. } => {
                assert_eq!(name, "SKEIN_NOT_SET");
                assert_eq!(*line, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("SKEIN_NOT_SET"), "{err}");
    }

    #[test]
    fn lone_and_double_dollars_are_left_alone() {
        let text = "a: pa$word\nb: $$HOME $$ $\nc: $HOME\n";
        assert_eq!(expand(text, &env(&[("HOME", "/root")])).unwrap(), text);
    }

    #[test]
    fn double_dollar_brace_escapes_a_reference() {
        assert_eq!(
            expand("a: $${NOT_SET} ${X}", &env(&[("X", "1")])).unwrap(),
            "a: ${NOT_SET} 1"
        );
    }

    #[test]
    fn comment_lines_are_left_alone() {
        let text = "  # set ${SKEIN_NOT_SET} to change this\na: 1\n";
        assert_eq!(expand(text, &env(&[])).unwrap(), text);
    }

    #[test]
    fn malformed_references_are_errors() {
        for text in ["a: ${", "a: ${NAME", "a: ${}", "a: ${1X}", "a: ${X-y}"] {
            let err = expand(text, &env(&[])).unwrap_err();
            assert!(
                matches!(err, Error::Expand { line: 1, .. }),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn several_references_on_one_line() {
        assert_eq!(
            expand("u: ${S:-http}://${H}:${P:-8123}", &env(&[("H", "ch")])).unwrap(),
            "u: http://ch:8123"
        );
    }
}
