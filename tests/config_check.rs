//! `multiwan check` against the profiles (must pass) and against broken files in
//! `tests/broken/`, each of which states the errors it must produce in `# expect:` lines:
//! `# expect: LINE:COLUMN FIELD: MESSAGE-PREFIX`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn multiwan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(args)
        .output()
        .expect("run multiwan")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_profile_passes_check() {
    let profiles = yaml_files("profiles");
    assert!(profiles.len() >= 3, "expected at least three profiles");
    for p in profiles {
        let out = multiwan(&["check", "-c", p.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": OK: "), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "summary is one line: {stdout}");
    }
}

#[test]
fn broken_files_report_every_expected_error_with_position() {
    let files = yaml_files("tests/broken");
    assert!(
        files.len() >= 15,
        "expected 15+ broken files, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (pos, rest) = e.split_once(' ').expect("LINE:COL then the rest");
                format!("{}:{pos}: {rest}", file.display())
            })
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let out = multiwan(&["check", "-c", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert!(out.stdout.is_empty(), "nothing on stdout for a broken file");
        for e in &expected {
            assert!(
                stderr.lines().any(|l| l.starts_with(e.as_str())),
                "{}: missing\n  {e}\nin\n{stderr}",
                file.display()
            );
        }
        let reported = stderr
            .lines()
            .filter(|l| l.starts_with(&*file.display().to_string()))
            .count();
        assert_eq!(
            reported,
            expected.len(),
            "{}: unexpected extra errors:\n{stderr}",
            file.display()
        );
        assert!(stderr.contains("nothing was changed"), "{stderr}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = multiwan(&["check", "-c", "/nonexistent/multiwan.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read config file /nonexistent/multiwan.yaml"),
        "{stderr}"
    );
}
