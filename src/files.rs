//! The file-system edge: the config file read with a size bound; files written so that no
//! one else's symlink or half-written file can be swapped in; and the trust check for
//! paths a root daemon runs or replaces (hooks, the control socket's directory).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{self, Config, ConfigError, MAX_FILE_BYTES};

/// Reads and validates a config file. A file over [`MAX_FILE_BYTES`] is refused without
/// being read whole.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    // Invalid UTF-8 is reported by the parser at its position, like any other mistake.
    let text = String::from_utf8_lossy(&bytes);
    config::parse(&text, &path.display().to_string())
}

/// Why a path cannot be trusted by a root daemon.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is owned by uid {uid}, not root")]
    Owner { path: PathBuf, uid: u32 },
    #[error("{path} is writable by {who} (mode {mode:o})")]
    Writable {
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },
}

/// A path a root daemon may run or write into (after symlinks): a file and its directory,
/// or a directory itself, owned by root and writable by no one else; every directory
/// further up owned by root and either writable by no one else or sticky (like /tmp:
/// others cannot rename what root owns there). That is what keepalived's `enable_script_security` and OpenSSH
/// demand: anyone who could write any of them could make root run or replace something
/// of theirs.
pub fn trusted(path: &Path) -> Result<PathBuf, Untrusted> {
    let real = path
        .canonicalize()
        .map_err(|source| Untrusted::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    // How many levels, from the path up, must be writable by root alone.
    let strict = if real.is_dir() { 1 } else { 2 };
    for (depth, p) in real.ancestors().enumerate() {
        let meta = std::fs::metadata(p).map_err(|source| Untrusted::Unreadable {
            path: p.to_path_buf(),
            source,
        })?;
        if meta.uid() != 0 {
            return Err(Untrusted::Owner {
                path: p.to_path_buf(),
                uid: meta.uid(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        let sticky_above = depth >= strict && meta.is_dir() && mode & 0o1000 != 0;
        let who = if mode & 0o002 != 0 {
            "everyone"
        } else if mode & 0o020 != 0 {
            "its group"
        } else {
            continue;
        };
        if sticky_above {
            continue;
        }
        return Err(Untrusted::Writable {
            path: p.to_path_buf(),
            who,
            mode,
        });
    }
    Ok(real)
}

/// Writes `text` to `dir/name` atomically: a fresh temporary file is created in `dir`
/// (never opening an existing path or following a symlink), synced, then renamed over the
/// target, so readers see the old file or the new one. `dir` must be trusted.
pub fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    trusted(dir).map_err(std::io::Error::other)?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, &target));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| target)
}
