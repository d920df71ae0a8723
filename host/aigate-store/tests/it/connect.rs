//! Opening stores: URLs, the embedded default, unreachable databases, migrations.

use aigate_store::{Store, StoreError};

use crate::store_suite;

#[tokio::test]
async fn embedded_default_creates_the_sqlite_file_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let store = Store::connect(None, &data).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(data.join("aigate.db").is_file());
    store.migrate().await.unwrap();
    let Store::Sqlite(s) = &store else { panic!("expected SQLite") };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(s.pool()).await.unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(s.pool()).await.unwrap();
    assert_eq!(fk, 1);
    store.close().await;

    // Reopening finds the same database, already migrated.
    let again = Store::connect(Some(""), &data).await.unwrap();
    again.migrate().await.unwrap();
}

#[tokio::test]
async fn sqlite_url_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("other.db").display());
    let store = Store::connect(Some(&url), dir.path()).await.unwrap();
    store.migrate().await.unwrap();
    assert!(dir.path().join("other.db").is_file());
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error_without_the_password() {
    let err = Store::connect(Some("postgres://aigate:s3cret@127.0.0.1:9/aigate"), std::path::Path::new("."))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot connect to the database at postgres://127.0.0.1:9/aigate"), "{msg}");
    assert!(msg.contains("DATABASE_URL"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn unsupported_or_malformed_urls_are_refused() {
    let err = Store::connect(Some("mysql://root:pw@db/x"), std::path::Path::new(".")).await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("pw"), "{err}");
    let err = Store::connect(Some("postgres://host:notaport/db"), std::path::Path::new(".")).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn unusable_sqlite_locations_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // The data folder is a file.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::connect(None, &file).await.unwrap_err();
    assert!(matches!(err, StoreError::DataDir { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot create the data folder"), "{err}");
    // The database file is a folder.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("aigate.db")).unwrap();
    let err = Store::connect(None, &data).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("aigate.db"), "{err}");
}

async fn migrations_run_twice(store: &Store) {
    // TestDb migrated once already.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
}

store_suite!(migrations_run_twice);
