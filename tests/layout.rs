//! The pure core (config, plan, explain, health, ha) does no I/O and knows nothing of the
//! adapters or services around it: no tokio, no netlink, no processes, no files, no raw
//! system calls, no imports from `kernel`, `daemon`, `control` or `files`. Only the adapters
//! under `src/kernel/` touch the kernel.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CORE: &[&str] = &[
    "src/config",
    "src/plan",
    "src/health",
    "src/history",
    "src/ha",
    "src/explain.rs",
    "src/family.rs",
];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "rtnetlink",
    "netlink_",
    "surge_ping",
    "std::process",
    "std::fs",
    "libc::",
    "std::net::Tcp",
    "std::os::unix::net",
    "crate::kernel",
    "crate::daemon",
    "crate::control",
    "crate::files",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every use of a forbidden name in code (comments do not count), as `file:line: text`.
fn violations(paths: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    for p in paths {
        rust_files(&Path::new(ROOT).join(p), &mut files);
    }
    assert!(!files.is_empty(), "no files under {paths:?}");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(word) = FORBIDDEN.iter().find(|w| code.contains(*w)) {
                let file = f.strip_prefix(ROOT).unwrap_or(&f).display().to_string();
                out.push(format!("{file}:{}: {word}: {}", i + 1, line.trim()));
            }
        }
    }
    out
}

#[test]
fn the_pure_core_does_no_io() {
    let found = violations(CORE);
    assert!(
        found.is_empty(),
        "I/O in the pure core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_io_where_there_is_some() {
    // The adapters do I/O: a check that finds nothing there would find nothing anywhere.
    let found = violations(&["src/kernel/exec.rs", "src/kernel/nfnetlink.rs"]);
    assert!(found.iter().any(|v| v.contains("tokio")), "{found:?}");
    assert!(found.iter().any(|v| v.contains("libc::")), "{found:?}");
}

#[test]
fn every_module_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! line: {missing:?}");
}
