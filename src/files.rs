//! The file-system edge: reading the config file. The config module itself only parses
//! text, so the pure core never touches a file.

use std::path::Path;

use crate::config::{self, Config, ConfigError};

/// Reads and validates a config file.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    config::parse(&text, &path.display().to_string())
}
