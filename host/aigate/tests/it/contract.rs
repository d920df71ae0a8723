//! Released contract folders are frozen: their files must hash as recorded.

use std::path::Path;

use sha2::{Digest, Sha256};

#[test]
fn released_wit_files_are_unchanged() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let recorded = std::fs::read_to_string(wit.join("released.sha256")).unwrap();
    let mut checked = 0;
    for line in recorded.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, file) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(wit.join(file)).unwrap_or_else(|e| panic!("released file {file} is missing: {e}"));
        let actual = hex(&Sha256::digest(&bytes));
        assert_eq!(
            actual, hash,
            "{file} changed after release. Released contract folders are frozen: revert it and add a new version folder instead (see wit/README.md)."
        );
        checked += 1;
    }
    assert!(checked > 0, "released.sha256 lists no file");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
