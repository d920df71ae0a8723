//! The codemap's invariants (ARCHITECTURE.md), held by `cargo test`: which crate may link
//! what, and that every module says what it is for.

use std::path::{Path, PathBuf};

fn host() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The host crates (`host/*` with a Cargo.toml).
fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(host())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "the host crates: {dirs:?}");
    dirs
}

/// The crates whose manifest depends on `dependency` (normal, dev or build).
fn dependents(dependency: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in crates() {
        let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let uses = ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .filter_map(|section| manifest.get(*section).and_then(toml::Value::as_table))
            .any(|deps| deps.contains_key(dependency));
        if uses {
            found.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_plugin_runtime_links_wasmtime() {
    assert_eq!(dependents("wasmtime"), ["aigate-plugins"]);
    assert_eq!(dependents("wasmtime-wasi"), ["aigate-plugins"]);
}

#[test]
fn only_the_store_speaks_sql_and_only_admission_touches_redis() {
    assert_eq!(dependents("sqlx"), ["aigate-store"]);
    assert_eq!(dependents("redis"), ["aigate-admission"]);
}

#[test]
fn every_module_has_a_doc_comment() {
    let mut missing = Vec::new();
    for dir in crates() {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(host()).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "modules without a `//!` doc at the top: {missing:?}");
}
