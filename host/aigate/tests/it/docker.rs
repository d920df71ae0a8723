//! No Docker engine runs here: the compose file is checked by reading it.
//! It must name the services and variables the README documents.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn compose_file_runs_gateway_postgres_and_redis_as_documented() {
    let text = std::fs::read_to_string(root().join("docker/docker-compose.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let services = &docs[0]["services"];
    for name in ["postgres", "redis", "gateway"] {
        assert!(!services[name].is_badvalue(), "service `{name}` missing");
    }
    let gateway = &services["gateway"];
    assert_eq!(gateway["build"]["dockerfile"].as_str(), Some("docker/Dockerfile"));
    let env = &gateway["environment"];
    let var = |k: &str| env[k].as_str().map(str::to_owned);
    for k in [
        "DATABASE_URL",
        "REDIS_URL",
        "AIGATE_LISTEN",
        "AIGATE_PLUGINS_DIR",
        "AIGATE_DATA_DIR",
        "QWEN_API_KEY",
        "AIGATE_ADMIN_TOKEN",
    ] {
        assert!(var(k).is_some(), "gateway environment lacks {k}");
    }
    assert!(var("DATABASE_URL").unwrap().starts_with("postgres://"), "points at the postgres service");
    assert!(var("DATABASE_URL").unwrap().contains("@postgres:5432/"));
    assert_eq!(var("REDIS_URL").as_deref(), Some("redis://redis:6379"));
    let depends = &gateway["depends_on"];
    assert_eq!(depends["postgres"]["condition"].as_str(), Some("service_healthy"));
    assert_eq!(depends["redis"]["condition"].as_str(), Some("service_healthy"));

    // Every variable the compose file sets is one the README documents.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    if let Yaml::Hash(h) = env {
        for k in h.keys().filter_map(Yaml::as_str) {
            assert!(readme.contains(k), "README does not document {k}");
        }
    }

    // The Dockerfile builds the plugins and the gateway, and runs `aigate serve`.
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo xtask build-plugins"));
    // The stripped `dist` profile ships, not the release build with its line tables.
    assert!(dockerfile.contains("cargo build --profile dist --locked -p aigate"));
    assert!(dockerfile.contains("cp target/dist/aigate "));
    assert!(dockerfile.contains("CMD [\"serve\"]"));
}
