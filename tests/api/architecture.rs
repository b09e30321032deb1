//! The arrows point one way: the domain, the error type, the audit trail and the principal
//! know no HTTP framework and no application state (issue 13: `web/` is the one home of the
//! actix glue). Read from the source, so a new import that breaks the rule fails here.

use std::path::{Path, PathBuf};

const FRAMEWORK_FREE: [&str; 5] = [
    "src/domain",
    "src/error.rs",
    "src/audit.rs",
    "src/audit",
    "src/auth/principal.rs",
];

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    std::fs::read_dir(path)
        .expect("a source folder")
        .flat_map(|entry| rust_files(&entry.expect("a folder entry").path()))
        .filter(|file| file.extension().is_some_and(|ext| ext == "rs"))
        .collect()
}

#[test]
fn the_domain_error_audit_and_principal_know_no_http_framework_nor_app_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<PathBuf> = FRAMEWORK_FREE
        .iter()
        .flat_map(|path| rust_files(&root.join(path)))
        .collect();
    assert!(
        files.len() > 5,
        "the rule reads the files it is about: {files:?}"
    );
    for file in files {
        let source = std::fs::read_to_string(&file).expect("a readable source file");
        for forbidden in ["actix", "AppState"] {
            assert!(
                !source.contains(forbidden),
                "{} mentions {forbidden}",
                file.display()
            );
        }
    }
}
