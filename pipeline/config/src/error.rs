//! Errors of this crate.
//!
//! In: failures while reading, expanding, overriding, parsing or validating a
//! topology. Out: one [`Error`] enum whose messages are lowercase, carry no
//! trailing period and name the file, line, environment variable or field
//! path that is wrong. Every error is permanent: retrying with the same file
//! and environment gives the same answer, so [`Error::is_retryable`] is
//! always `false`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a topology.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology file could not be read.
    #[error("failed to read topology file {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },

    /// A `${VAR}` without a default names a variable that is not set.
    #[error(
        "environment variable {name} is not set (referenced at line {line} of {}; \
         write ${{{name}:-default}} to give it a default)",
        origin(path.as_deref())
    )]
    UnsetVariable {
        /// The variable's name.
        name: String,
        /// The file it was referenced in, `None` when parsing text.
        path: Option<PathBuf>,
        /// The 1-based line of the reference.
        line: usize,
    },

    /// A `${...}` reference is malformed (unterminated, or not a variable name).
    #[error(
        "invalid variable reference at line {line} of {}: {message}",
        origin(path.as_deref())
    )]
    Expand {
        /// The file the reference is in, `None` when parsing text.
        path: Option<PathBuf>,
        /// The 1-based line of the reference.
        line: usize,
        /// What is wrong with it.
        message: String,
    },

    /// The (expanded) text is not valid YAML or does not match the schema:
    /// a syntax error, an unknown field, a value of the wrong type.
    #[error("failed to parse {}: {message}", origin(path.as_deref()))]
    Parse {
        /// The file being parsed, `None` when parsing text.
        path: Option<PathBuf>,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// The 1-based column of the problem, when known.
        column: Option<usize>,
        /// The parser's message, which names the field path and the location.
        message: String,
    },

    /// A `SKEIN__...` environment override names no field, or its value does
    /// not fit the field.
    #[error("environment override {var} failed: {message}")]
    Override {
        /// The environment variable's name, e.g. `SKEIN__INGESTER__WORKERS`.
        var: String,
        /// What is wrong with it.
        message: String,
    },

    /// The topology parsed but failed validation; holds every problem found.
    #[error("invalid topology: {}", Problems(.0))]
    Invalid(Vec<ValidationError>),
}

impl Error {
    /// Whether retrying the same operation could succeed. Configuration errors
    /// are permanent: this is always `false`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Read { .. }
            | Error::UnsetVariable { .. }
            | Error::Expand { .. }
            | Error::Parse { .. }
            | Error::Override { .. }
            | Error::Invalid(_) => false,
        }
    }

    /// Records which file the text came from, for errors that quote a location.
    pub(crate) fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            Error::UnsetVariable { path, .. }
            | Error::Expand { path, .. }
            | Error::Parse { path, .. } => *path = Some(file.to_path_buf()),
            Error::Read { .. } | Error::Override { .. } | Error::Invalid(_) => {}
        }
        self
    }
}

/// One validation problem: the field path and what is wrong with it.
///
/// Displays as `{path}: {message}`, e.g. `topics.spans.partitions: must be at
/// least 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `storage.clickhouse.url`; map
    /// keys are written in brackets, e.g. `kafka.properties[client.id]`.
    pub path: String,
    /// What is wrong, lowercase and without a trailing period.
    pub message: String,
}

impl ValidationError {
    /// A problem with the field at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Where text came from, for messages.
fn origin(path: Option<&Path>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "topology".to_owned(),
    }
}

/// Displays a list of problems on one line, separated by `; `.
struct Problems<'a>(&'a [ValidationError]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem() {
        let err = Error::Invalid(vec![
            ValidationError::new("kafka.brokers", "must not be empty"),
            ValidationError::new("ingester.workers", "must be at least 1"),
        ]);
        assert_eq!(
            err.to_string(),
            "invalid topology: kafka.brokers: must not be empty; ingester.workers: must be at least 1"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn unset_variable_names_it_and_the_file() {
        let err = Error::UnsetVariable {
            name: "FOO".into(),
            path: None,
            line: 3,
        }
        .in_file(Path::new("/etc/skein/topology.yaml"));
        assert_eq!(
            err.to_string(),
            "environment variable FOO is not set (referenced at line 3 of \
             /etc/skein/topology.yaml; write ${FOO:-default} to give it a default)"
        );
    }
}
