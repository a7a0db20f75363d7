//! External clients for end-to-end tests: finding a tool (skipping with a reason when it is
//! missing), running it under `timeout`, and comparing directory trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CLIENT_TIMEOUT_SECS: &str = "60";

pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool's path, or None after saying why the test is skipped.
pub fn require(name: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        eprintln!("skipping: `{name}` is not installed (bash .ci/run installs it)");
    }
    found
}

/// Run `tool args...` under `timeout`; returns the output whatever the exit status.
pub fn run(tool: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("--kill-after=5")
        .arg(CLIENT_TIMEOUT_SECS)
        .arg(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()))
}

/// Run and require exit status 0.
#[track_caller]
pub fn run_ok(tool: &Path, args: &[&str]) -> Output {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{} {args:?} failed with {}\nstdout: {}\nstderr: {}",
        tool.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Relative path -> None for a directory, Some(bytes) for a file.
pub fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                out.insert(rel, None);
                walk(base, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
