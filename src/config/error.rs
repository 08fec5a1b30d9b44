//! Config errors: each names the file, line, column and field, so an admin can jump to it.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field, as a path: `uplinks[1].probe.quorum`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

/// At most this many diagnostics are printed; the count says how many there were.
const SHOWN: usize = 100;

fn render(diagnostics: &[Diagnostic]) -> String {
    let mut lines: Vec<String> = diagnostics
        .iter()
        .take(SHOWN)
        .map(|d| d.to_string())
        .collect();
    if diagnostics.len() > SHOWN {
        lines.push(format!("... and {} more", diagnostics.len() - SHOWN));
    }
    let count = diagnostics.len();
    let noun = if count == 1 { "error" } else { "errors" };
    format!("{}\n{count} {noun}: nothing was changed", lines.join("\n"))
}

/// A value from the file as it may be shown: control characters escaped (an escape
/// sequence must not clear a terminal, a newline must not forge another error line), and
/// cut when long (a 10 MB value is not printed whole).
pub fn printable(text: &str) -> String {
    const MAX: usize = 400;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push_str(&format!("... ({} characters in all)", text.chars().count()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
