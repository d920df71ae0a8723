//! No cluster, Docker engine, Prometheus or Grafana runs here: the monitoring
//! files (`docker/prometheus.yml`, `docker/grafana/`) and the Kubernetes
//! manifests (`deploy/kubernetes/`) are checked by reading them. They must
//! name the endpoints, ports, variables and metrics the gateway serves and the
//! README documents, and the manifests' config file must pass the real loader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aigate::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The one document of a YAML file.
fn yaml(path: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path} holds one document");
    docs.remove(0)
}

fn items(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

/// The element of a list whose `name` is `name`.
fn named<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    items(list)
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no entry named `{name}` in {list:?}"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str().unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// The metrics the gateway exports (README "Monitoring and Kubernetes").
const METRICS: &[&str] = &[
    "aigate_requests_total",
    "aigate_request_duration_seconds",
    "aigate_provider_attempts_total",
    "aigate_fallbacks_total",
    "aigate_provider_duration_seconds",
    "aigate_time_to_first_token_seconds",
    "aigate_tokens_total",
    "aigate_billed_cost_total",
    "aigate_limit_refusals_total",
    "aigate_idempotency_total",
    "aigate_plugin_instantiations_total",
    "aigate_plugin_faults_total",
    "aigate_plugin_info",
    "aigate_plugin_reloads_total",
    "aigate_usage_queue_depth",
    "aigate_usage_spooled_batches",
    "aigate_store_errors_total",
];

/// Histograms have series only under `_bucket`, `_sum` and `_count`.
const HISTOGRAMS: &[&str] =
    &["aigate_request_duration_seconds", "aigate_provider_duration_seconds", "aigate_time_to_first_token_seconds"];

/// Variables the Deployment takes from the Secret `aigate-secrets`.
const SECRET_ENV: &[&str] =
    &["DATABASE_URL", "REDIS_URL", "AIGATE_ADMIN_TOKEN", "QWEN_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"];

/// Variables the Deployment takes from the ConfigMap `aigate-config`.
const CONFIG_ENV: &[&str] = &[
    "AIGATE_CONFIG",
    "AIGATE_LISTEN",
    "AIGATE_METRICS_LISTEN",
    "AIGATE_LOG_JSON",
    "AIGATE_PLUGINS_DIR",
    "AIGATE_DATA_DIR",
];

const K8S: &str = "deploy/kubernetes";

fn manifest(file: &str) -> Yaml {
    yaml(&format!("{K8S}/{file}"))
}

fn deployment() -> Yaml {
    let d = manifest("deployment.yaml");
    assert_eq!(d["kind"].as_str(), Some("Deployment"));
    assert_eq!(d["metadata"]["name"].as_str(), Some("aigate"));
    d
}

/// The gateway container (the only one).
fn container(deployment: &Yaml) -> &Yaml {
    let containers = items(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A probe's or Service's port, by number or by the container port's name.
fn container_port(container: &Yaml, port: &Yaml) -> i64 {
    match port {
        Yaml::Integer(n) => *n,
        Yaml::String(name) => named(&container["ports"], name)["containerPort"].as_i64().unwrap(),
        other => panic!("not a port: {other:?}"),
    }
}

fn port_of(address: &str) -> i64 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in `{address}`"))
}

/// The ConfigMap's `data`.
fn config_data() -> BTreeMap<String, String> {
    let cm = manifest("configmap.yaml");
    assert_eq!(cm["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(cm["metadata"]["name"].as_str(), Some("aigate-config"));
    string_map(&cm["data"], "ConfigMap data")
}

/// The example Secret's `stringData`.
fn secret_example() -> BTreeMap<String, String> {
    let s = manifest("secret.example.yaml");
    assert_eq!(s["kind"].as_str(), Some("Secret"));
    assert_eq!(s["metadata"]["name"].as_str(), Some("aigate-secrets"));
    string_map(&s["stringData"], "Secret stringData")
}

fn string_map(y: &Yaml, what: &str) -> BTreeMap<String, String> {
    let h = y.as_hash().unwrap_or_else(|| panic!("{what} is not a map"));
    h.iter().map(|(k, v)| (str_of(k, what).to_owned(), str_of(v, &format!("{what} {k:?}")).to_owned())).collect()
}

#[test]
fn deployment_runs_two_replicas_probed_on_the_health_endpoints() {
    let d = deployment();
    assert_eq!(d["spec"]["replicas"].as_i64(), Some(2));
    let c = container(&d);
    assert_eq!(container_port(c, &Yaml::String("http".into())), 8000);
    assert_eq!(container_port(c, &Yaml::String("metrics".into())), 9464);

    let probe = |kind: &str| {
        let get = &c[kind]["httpGet"];
        assert!(!get.is_badvalue(), "{kind} is an httpGet probe");
        (str_of(&get["path"], kind).to_owned(), container_port(c, &get["port"]))
    };
    assert_eq!(probe("readinessProbe"), ("/health/ready".to_owned(), 8000));
    assert_eq!(probe("livenessProbe"), ("/health/live".to_owned(), 8000));
    // A slow start must not be taken for a dead process, nor a database
    // outage: the startup probe waits on liveness, never on readiness.
    if !c["startupProbe"].is_badvalue() {
        assert_eq!(probe("startupProbe"), ("/health/live".to_owned(), 8000));
    }

    // The selector picks the template's pods.
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in d["spec"]["selector"]["matchLabels"].as_hash().unwrap() {
        assert_eq!(&labels[str_of(k, "label")], v, "template lacks selector label {k:?}");
    }

    // Prometheus' annotation-based discovery scrapes each pod's metrics listener.
    let notes = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(notes["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(notes["prometheus.io/path"].as_str(), Some("/metrics"));
    assert_eq!(notes["prometheus.io/port"].as_str(), Some("9464"));

    // The grace period covers the preStop pause and the gateway's own
    // shutdown_timeout_ms (checked against the ConfigMap's file below).
    let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap();
    let pause = items(&c["lifecycle"]["preStop"]["exec"]["command"])
        .iter()
        .filter_map(Yaml::as_str)
        .find_map(|a| a.parse::<i64>().ok())
        .unwrap_or(0);
    let config = configmap_config();
    let shutdown = i64::try_from(config.shutdown_timeout.as_secs()).unwrap();
    assert!(grace > pause + shutdown, "grace {grace}s must exceed preStop {pause}s + shutdown_timeout {shutdown}s");
}

#[test]
fn deployment_environment_comes_from_the_secret_and_the_configmap() {
    let d = deployment();
    let c = container(&d);
    let env = &c["env"];
    let names: BTreeSet<&str> = items(env).iter().map(|e| str_of(&e["name"], "env name")).collect();
    let expected: BTreeSet<&str> = SECRET_ENV.iter().chain(CONFIG_ENV).copied().collect();
    assert_eq!(names, expected, "the Deployment's environment");

    let secret = secret_example();
    for name in SECRET_ENV {
        let from = &named(env, name)["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"].as_str(), Some("aigate-secrets"), "{name} comes from the Secret");
        assert_eq!(from["key"].as_str(), Some(*name), "{name} is the Secret's key of that name");
        assert!(secret.contains_key(*name), "secret.example.yaml lacks {name}");
    }
    let data = config_data();
    for name in CONFIG_ENV {
        let from = &named(env, name)["valueFrom"]["configMapKeyRef"];
        assert_eq!(from["name"].as_str(), Some("aigate-config"), "{name} comes from the ConfigMap");
        assert_eq!(from["key"].as_str(), Some(*name), "{name} is the ConfigMap's key of that name");
        assert!(data.contains_key(*name), "the ConfigMap lacks {name}");
    }
    assert_eq!(data["AIGATE_LISTEN"], "0.0.0.0:8000");
    assert_eq!(data["AIGATE_METRICS_LISTEN"], "0.0.0.0:9464");
    assert_eq!(data["AIGATE_LOG_JSON"], "true");
    assert_eq!(port_of(&data["AIGATE_LISTEN"]), container_port(c, &Yaml::String("http".into())));
    assert_eq!(port_of(&data["AIGATE_METRICS_LISTEN"]), container_port(c, &Yaml::String("metrics".into())));

    // AIGATE_CONFIG names the ConfigMap's aigate.toml where it is mounted.
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    let config_volume = items(volumes)
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some("aigate-config"))
        .expect("a volume of the ConfigMap");
    let file = items(&config_volume["configMap"]["items"])
        .iter()
        .find(|i| i["key"].as_str() == Some("aigate.toml"))
        .map_or("aigate.toml", |i| str_of(&i["path"], "item path"));
    let mounts = &c["volumeMounts"];
    let mount = named(mounts, str_of(&config_volume["name"], "volume name"));
    assert_eq!(data["AIGATE_CONFIG"], format!("{}/{file}", str_of(&mount["mountPath"], "mountPath")));

    // The plugins are the image's (docker/Dockerfile copies them there), and
    // no mount hides them.
    let dockerfile = read("docker/Dockerfile");
    let plugins = &data["AIGATE_PLUGINS_DIR"];
    assert!(dockerfile.contains(&format!("AIGATE_PLUGINS_DIR={plugins} ")), "the image's AIGATE_PLUGINS_DIR");
    assert!(dockerfile.contains(&format!("COPY --from=build /out/plugins/ {plugins}/")), "the image's plugins");
    for m in items(mounts) {
        let at = str_of(&m["mountPath"], "mountPath").trim_end_matches('/');
        assert!(
            !(plugins == at || plugins.starts_with(&format!("{at}/")) || at.starts_with(&format!("{plugins}/"))),
            "volume mounted at {at} hides or changes the image's plugins in {plugins}"
        );
    }
    // The data folder (usage spool, plugin cache) is a writable volume.
    let data_mount = items(mounts)
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(data["AIGATE_DATA_DIR"].as_str()))
        .expect("AIGATE_DATA_DIR is mounted");
    assert_ne!(data_mount["readOnly"].as_bool(), Some(true), "AIGATE_DATA_DIR is writable");

    // The pod runs as the image's numeric user.
    let uid = d["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_i64().unwrap();
    assert!(dockerfile.contains(&format!("--uid {uid} ")), "the image's user is {uid}");

    let readme = read("README.md");
    for name in &expected {
        assert!(readme.contains(name), "README does not document {name}");
    }
}

/// The ConfigMap's config file loaded as the gateway loads it: the file named
/// by `AIGATE_CONFIG`, with the ConfigMap's and the example Secret's environment.
fn configmap_config() -> Config {
    let data = config_data();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aigate.toml");
    std::fs::write(&file, &data["aigate.toml"]).unwrap();
    let mut env: BTreeMap<String, String> =
        CONFIG_ENV.iter().map(|k| ((*k).to_owned(), data[*k].clone())).chain(secret_example()).collect();
    env.insert("AIGATE_CONFIG".to_owned(), file.display().to_string());
    let config = Config::load(None, &env).unwrap_or_else(|e| panic!("the ConfigMap's aigate.toml: {e}"));
    assert_eq!(config.source.as_deref(), Some(file.as_path()), "AIGATE_CONFIG names the config file");
    config
}

#[test]
fn configmap_config_file_is_accepted_by_the_gateway() {
    let config = configmap_config();
    let data = config_data();
    assert_eq!(config.listen.to_string(), data["AIGATE_LISTEN"]);
    assert_eq!(config.plugins_dir, PathBuf::from(&data["AIGATE_PLUGINS_DIR"]));
    assert_eq!(config.data_dir, PathBuf::from(&data["AIGATE_DATA_DIR"]));
    assert!(config.database_url.is_some() && config.redis_url.is_some() && config.admin_token.is_some());
    // Each provider key in the Secret goes to a provider the file names.
    for key in SECRET_ENV.iter().filter_map(|k| k.strip_suffix("_API_KEY")) {
        let provider = key.to_ascii_lowercase();
        let p = config.providers.get(&provider).unwrap_or_else(|| panic!("aigate.toml does not name {provider}"));
        assert!(p.api_key.is_some(), "{provider} gets its key from {key}_API_KEY");
    }
}

#[test]
fn service_exposes_the_api_on_80_and_metrics_on_9464() {
    let d = deployment();
    let c = container(&d);
    let s = manifest("service.yaml");
    assert_eq!(s["kind"].as_str(), Some("Service"));
    assert_eq!(s["metadata"]["name"].as_str(), Some("aigate"));
    let ports = &s["spec"]["ports"];
    let http = named(ports, "http");
    assert_eq!(http["port"].as_i64(), Some(80));
    assert_eq!(container_port(c, &http["targetPort"]), 8000);
    let metrics = named(ports, "metrics");
    assert_eq!(metrics["port"].as_i64(), Some(9464));
    assert_eq!(container_port(c, &metrics["targetPort"]), 9464);
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in s["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(&labels[str_of(k, "label")], v, "the Service selects the gateway's pods");
    }
}

#[test]
fn kustomization_lists_every_manifest_but_the_secret_example() {
    let k = manifest("kustomization.yaml");
    let listed: BTreeSet<String> = items(&k["resources"]).iter().map(|r| str_of(r, "resource").to_owned()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(root().join(K8S))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| n != "kustomization.yaml" && n != "secret.example.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs the manifests in {K8S}");
    for file in &listed {
        let m = manifest(file);
        for field in ["apiVersion", "kind"] {
            assert!(m[field].as_str().is_some(), "{file} lacks {field}");
        }
        assert!(m["metadata"]["name"].as_str().is_some(), "{file} lacks metadata.name");
    }
    // The Deployment's image is the one kustomize sets.
    let image = str_of(&container(&deployment())["image"], "image").to_owned();
    assert!(items(&k["images"]).iter().any(|i| i["name"].as_str() == Some(image.as_str())));
}

/// The compose file's services.
fn compose() -> Yaml {
    yaml("docker/docker-compose.yml")["services"].clone()
}

/// `host:container` volumes of a compose service whose host side is a path
/// (relative to docker/), as (host path, container path).
fn bind_mounts(service: &Yaml) -> Vec<(String, String)> {
    items(&service["volumes"])
        .iter()
        .filter_map(Yaml::as_str)
        .filter(|v| v.starts_with("./") || v.starts_with("../"))
        .map(|v| {
            let mut parts = v.split(':');
            (parts.next().unwrap().to_owned(), parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn compose_runs_prometheus_and_grafana_against_the_metrics_listener() {
    let services = compose();
    assert_eq!(
        services["gateway"]["environment"]["AIGATE_METRICS_LISTEN"].as_str(),
        Some("0.0.0.0:9464"),
        "the gateway serves metrics on their own listener"
    );
    assert!(str_of(&services["prometheus"]["image"], "prometheus image").starts_with("prom/prometheus:"));
    assert!(str_of(&services["grafana"]["image"], "grafana image").starts_with("grafana/grafana:"));

    // Every mounted file exists.
    for name in ["prometheus", "grafana"] {
        for (host, _) in bind_mounts(&services[name]) {
            assert!(root().join("docker").join(&host).exists(), "{name} mounts {host}, which is missing");
        }
    }
    let prometheus = bind_mounts(&services["prometheus"]);
    assert!(prometheus.contains(&("./prometheus.yml".into(), "/etc/prometheus/prometheus.yml".into())));
    let grafana = bind_mounts(&services["grafana"]);
    assert!(grafana.contains(&("./grafana/provisioning".into(), "/etc/grafana/provisioning".into())));

    // Grafana reads the dashboards folder where the compose file mounts it,
    // from the Prometheus the compose file runs.
    let provider = &yaml("docker/grafana/provisioning/dashboards/aigate.yml")["providers"][0];
    let path = str_of(&provider["options"]["path"], "dashboards path");
    assert!(grafana.contains(&("./grafana/dashboards".into(), path.to_owned())), "dashboards mounted at {path}");
    let source = &yaml("docker/grafana/provisioning/datasources/prometheus.yml")["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert_eq!(source["url"].as_str(), Some("http://prometheus:9090"));
}

#[test]
fn prometheus_scrapes_every_gateway_replica_on_9464() {
    let config = yaml("docker/prometheus.yml");
    let job = items(&config["scrape_configs"])
        .iter()
        .find(|j| j["job_name"].as_str() == Some("aigate"))
        .expect("a scrape job `aigate`");
    assert!(matches!(job["metrics_path"].as_str(), None | Some("/metrics")));
    // gateway:9464, resolved by DNS to every replica of the compose service.
    let sd = &job["dns_sd_configs"][0];
    assert!(items(&sd["names"]).iter().any(|n| n.as_str() == Some("gateway")), "targets the `gateway` service");
    assert_eq!(sd["port"].as_i64(), Some(9464));
    assert_eq!(sd["type"].as_str(), Some("A"));
    let listen = compose()["gateway"]["environment"]["AIGATE_METRICS_LISTEN"].as_str().map(port_of);
    assert_eq!(listen, Some(9464), "the port the gateway's metrics listener binds");
}

/// The `aigate_*` metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = expr[from..].find("aigate_") {
        let start = from + at;
        let len = expr[start + "aigate_".len()..].bytes().take_while(|b| b.is_ascii_lowercase() || *b == b'_').count();
        let end = start + "aigate_".len() + len;
        let inside_word =
            expr[..start].bytes().next_back().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if !inside_word && len > 0 {
            names.push(&expr[start..end]);
        }
        from = end;
    }
    names
}

fn exprs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_the_gateway_metrics() {
    assert_eq!(
        metric_names("histogram_quantile(0.9, sum by (le) (rate(aigate_a_bucket[5m]))) / my_aigate_b + aigate_c"),
        ["aigate_a_bucket", "aigate_c"]
    );

    let dashboard: serde_json::Value = serde_json::from_str(&read("docker/grafana/dashboards/aigate.json")).unwrap();
    assert_eq!(dashboard["uid"], "aigate");
    let schema = dashboard["schemaVersion"].as_u64().unwrap();
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id {} twice", p["id"]);
        if p["type"] != "row" {
            let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        }
    }

    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let mut used = BTreeSet::new();
    for expr in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "`{expr}` reads no gateway metric");
        for name in names {
            assert!(!HISTOGRAMS.contains(&name), "`{expr}`: a histogram has series only as _bucket/_sum/_count");
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            assert!(METRICS.contains(&base), "`{expr}` reads `{name}`, which the gateway does not export");
            if base != name {
                assert!(HISTOGRAMS.contains(&base), "`{expr}`: `{base}` is not a histogram");
            }
            used.insert(base);
        }
    }
    let unused: Vec<_> = METRICS.iter().filter(|m| !used.contains(*m)).collect();
    assert!(unused.is_empty(), "metrics no panel shows: {unused:?}");

    let readme = read("README.md");
    for m in METRICS {
        assert!(readme.contains(m), "README does not document {m}");
    }
}
