//! The configuration file: its schema, and the checks that turn YAML into a [`Config`] that
//! the rest of multiwan can trust. Every problem is reported at once with its position.

mod error;
mod locate;
mod model;
pub mod names;
mod path;
mod raw;
mod validate;
mod values;

use std::path::Path;

pub use error::{ConfigError, Diagnostic};
pub use model::*;
pub use values::{PortRange, Span};

/// Where `multiwan` looks for its config unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/multiwan/multiwan.yaml";

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates config text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    validate::Checker::new(text, file).run()
}
