//! Checks on the source itself that no compiler enforces.
//!
//! Every value a secret depends on or an adversary sees comes from a
//! generator seeded with 32 bytes from the OS (or from the OS directly).
//! A generator seeded with 64 bits, or one that is not cryptographic, is
//! allowed only in tests and in the simulator, where reproducibility is
//! the point and nothing is secret.

use std::path::{Path, PathBuf};

/// What must not appear in the code a node runs.
const WEAK: &[&str] = &[
    "seed_from_u64",
    "SmallRng",
    "XorShiftRng",
    "Pcg32",
    "Pcg64",
    "fastrand",
    "rand::random",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reads the source tree") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file that is not test code: everything before its first
/// `#[cfg(test)]` (test modules sit at the end of a file in this tree),
/// none of a file that is itself a test module.
fn node_code(path: &Path, text: &str) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[test]
fn no_weak_randomness_outside_tests_and_the_simulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sim = root.join("sim");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 20, "found the source tree: {files:?}");
    let mut found = Vec::new();
    for path in &files {
        if path.starts_with(&sim) || path == &root.join("sim.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("reads a source file");
        let code = node_code(path, &text);
        for weak in WEAK {
            for (n, line) in code.lines().enumerate() {
                if line.contains(weak) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "weak randomness in node code:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_what_it_looks_for() {
    let text =
        "fn f() { let r = StdRng::seed_from_u64(1); }\n#[cfg(test)]\nmod tests { seed_from_u64 }";
    let code = node_code(Path::new("src/x.rs"), text);
    assert!(code.contains("seed_from_u64"));
    assert!(!code.contains("mod tests"));
    assert!(node_code(Path::new("src/x/tests.rs"), text).is_empty());
}
