//! A provider key goes only to the origin the operator configured, in the place the operator
//! allows, and never follows a redirect: shown with `test/hostile.wasm`, an attacker's plugin
//! whose default base URL is a listener of the test's (patched into the built component) and
//! which asks for the key in the `Host` header. The listeners record every byte they receive.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Setup, TestGateway, artifact, assert_error, chat_body, eventually, start_with};

const KEY: &str = "sk-provider-key-that-must-stay-home";

/// A listener that records everything sent to it and answers each request with `response`.
struct Listener {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Listener {
    async fn start(response: String) -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                let log = log.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buf[..n]);
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if complete(&request) {
                            let _ = stream.write_all(response.as_bytes()).await;
                            break;
                        }
                    }
                });
            }
        });
        Listener { addr, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// Whether `request` holds a whole HTTP/1.1 request (headers and `content-length` bytes of body).
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

const SERVER_ERROR: &str = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";

/// `test/hostile.wasm` with its attacker origin pointed at `listener`, as `hostile.wasm` in `dir`.
fn install_hostile_plugin(dir: &Path, listener: SocketAddr) {
    const PLACEHOLDER: &[u8] = b"http://hostile.invalid/where-the-attacker-listens-0123456789abcdef";
    let mut bytes = std::fs::read(artifact("test/hostile.wasm")).unwrap();
    let mut origin = format!("http://{listener}/").into_bytes();
    origin.resize(PLACEHOLDER.len(), b'x');
    let mut patched = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(PLACEHOLDER.len()).position(|w| w == PLACEHOLDER) {
        let start = at + found;
        bytes[start..start + PLACEHOLDER.len()].copy_from_slice(&origin);
        patched += 1;
        at = start + PLACEHOLDER.len();
    }
    assert!(patched > 0, "the placeholder is in the built plugin");
    // Written beside, then renamed in: the watcher sees one whole file.
    let staged = dir.join(".hostile.wasm.tmp");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(staged, dir.join("hostile.wasm")).unwrap();
}

/// A gateway with `toml` and HOSTILE_API_KEY, then the hostile plugin dropped in (hot reload).
async fn gateway_with_hostile_plugin(toml: String, attacker: SocketAddr) -> TestGateway {
    let mut setup = Setup { toml, ..Default::default() };
    setup.env.insert("HOSTILE_API_KEY".to_owned(), KEY.to_owned());
    let gw = start_with(setup).await;
    install_hostile_plugin(gw.plugins_dir.path(), attacker);
    let loaded = eventually(Duration::from_secs(60), async || {
        let (_, body) = gw.admin_json("/admin/plugins").await;
        body["data"]
            .as_array()
            .is_some_and(|files| files.iter().any(|p| p["name"] == "hostile" && p["state"] == "serving"))
    })
    .await;
    assert!(loaded, "the hostile plugin loads: {}", gw.admin_json("/admin/plugins").await.1);
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_asking_for_another_header_or_origin_gets_no_key() {
    let operator = Listener::start(SERVER_ERROR.to_owned()).await;
    let attacker = Listener::start(SERVER_ERROR.to_owned()).await;
    let toml = format!("\n[providers.hostile]\nbase_url = \"http://{}/v1\"\nmodels = [\"*\"]\n", operator.addr);
    let gw = gateway_with_hostile_plugin(toml, attacker.addr).await;

    // It asks for the key in `Host`; the operator's entry allows `Authorization: Bearer`.
    let body = assert_error(gw.chat(&chat_body("hostile:gpt-4o")).await, 502, "plugin_error").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`host: <key>`") && message.contains("providers.hostile.auth"), "{message}");
    assert!(!message.contains(KEY));

    // It builds its request for its own origin instead of the operator's.
    let body = assert_error(gw.chat(&chat_body("hostile:elsewhere")).await, 502, "plugin_error").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("outside the provider's base URL"), "{message}");

    assert_eq!(operator.received(), "", "nothing was sent to the operator's origin");
    assert_eq!(attacker.received(), "", "nothing was sent to the attacker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_an_entry_in_config_gets_no_key() {
    let attacker = Listener::start(SERVER_ERROR.to_owned()).await;
    // No [providers.hostile]: only the plugin's own default base URL would say where to go.
    let gw = gateway_with_hostile_plugin(String::new(), attacker.addr).await;

    let body = assert_error(gw.chat(&chat_body("hostile:gpt-4o")).await, 503, "provider_not_configured").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("[providers.hostile]") && message.contains("HOSTILE_API_KEY"), "{message}");
    assert_eq!(attacker.received(), "", "the key never went to the plugin's origin");
}

#[tokio::test]
async fn a_redirect_is_a_provider_error_and_never_followed() {
    let elsewhere = Listener::start(SERVER_ERROR.to_owned()).await;
    let redirecting = Listener::start(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{}/v1/chat/completions\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        elsewhere.addr
    ))
    .await;
    let mut setup = Setup {
        toml: format!(
            "\n[providers.moved]\nplugin = \"openai\"\nbase_url = \"http://{}/v1\"\nmodels = [\"*\"]\n",
            redirecting.addr
        ),
        ..Default::default()
    };
    setup.env.insert("MOVED_API_KEY".to_owned(), KEY.to_owned());
    let gw = start_with(setup).await;

    let body = assert_error(gw.chat(&chat_body("moved:gpt-4o")).await, 502, "upstream_redirect").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("307"), "{body}");
    assert!(redirecting.received().contains(KEY), "the configured origin got the call");
    assert_eq!(elsewhere.received(), "", "the redirect was not followed");
}
