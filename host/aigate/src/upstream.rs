//! The client that talks to providers: one pooled HTTP(S) client (rustls,
//! TCP_NODELAY, HTTP/2 where offered), timeouts, and credential injection.
//!
//! Plugins build requests; this module decides whether to send them. It
//! refuses any URL outside the provider's configured origin, and a plugin
//! asking for the key anywhere but where the operator allows
//! (`credentials.rs`), because it is about to attach that provider's secret.
//! Redirects are never followed (a 3xx is an error), and transport errors
//! drop the URL's query, where a key may be.

use std::time::Duration;

use aigate_plugins::canonical::{AuthScheme, HttpRequest, HttpResponse};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use secrecy::SecretString;
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::credentials::{KeyPlacement, describe_scheme};
use crate::error::ApiError;

/// Headers the transport owns; a plugin's value for them is dropped.
const TRANSPORT_HEADERS: [&str; 6] =
    ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"];

#[derive(Debug, Clone)]
pub struct Upstream {
    /// Connection pools: pool `i` for serving thread `i` (`serving.rs`: a pooled connection is
    /// driven by a task of the runtime that opened it), the last one for everything else.
    clients: std::sync::Arc<[reqwest::Client]>,
    pub config: UpstreamConfig,
}

/// What the host knows about the provider a request goes to.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub provider: &'a str,
    pub base_url: &'a url::Url,
    /// What the plugin declares; used only when it matches `placement`.
    pub auth: &'a AuthScheme,
    pub credential: Option<&'a SecretString>,
    /// Where the operator allows the key.
    pub placement: &'a KeyPlacement,
}

impl Upstream {
    /// One connection pool, for any thread.
    pub fn new(config: UpstreamConfig) -> Result<Self, reqwest::Error> {
        Self::with_pools(config, 0)
    }

    /// A connection pool per serving thread, and one for every other thread.
    pub fn with_pools(config: UpstreamConfig, serving_threads: usize) -> Result<Self, reqwest::Error> {
        let clients = (0..=serving_threads).map(|_| Self::client_for(&config)).collect::<Result<_, _>>()?;
        Ok(Upstream { clients, config })
    }

    fn client_for(config: &UpstreamConfig) -> Result<reqwest::Client, reqwest::Error> {
        // rustls with ring (no C toolchain beyond cc, quick to build); a second
        // install is refused harmlessly when a provider is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("aigate/", env!("CARGO_PKG_VERSION")))
            // A redirect could take the key to another host: `send` turns a 3xx into an error.
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// The connection pool of the serving thread this runs on, else the shared one.
    fn client(&self) -> &reqwest::Client {
        let shared = self.clients.len() - 1;
        let pool = crate::serving::worker().filter(|&i| i < shared).unwrap_or(shared);
        &self.clients[pool]
    }

    /// Turns a plugin's request into a sendable one: checks it, drops
    /// transport headers, adds the credential where the operator allows, and
    /// only if the plugin's declared scheme asks for exactly that.
    pub fn prepare(&self, target: &Target<'_>, plugin: &str, req: HttpRequest) -> Result<reqwest::Request, ApiError> {
        let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| {
            ApiError::plugin_fault(format!("Plugin `{plugin}` built a request with an invalid method."))
        })?;
        let mut url = url::Url::parse(&req.url)
            .map_err(|_| ApiError::plugin_fault(format!("Plugin `{plugin}` built a request with an invalid URL.")))?;
        if url.origin() != target.base_url.origin() {
            return Err(ApiError::plugin_fault(format!(
                "Plugin `{plugin}` built a request for {}, outside the provider's base URL {}; it was not sent, so the credential stays safe.",
                url.origin().ascii_serialization(),
                target.base_url.origin().ascii_serialization()
            )));
        }
        let mut headers = http::HeaderMap::with_capacity(req.headers.len() + 1);
        for (name, value) in req.headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) else {
                return Err(ApiError::plugin_fault(format!(
                    "Plugin `{plugin}` built a request with an invalid header."
                )));
            };
            if !TRANSPORT_HEADERS.contains(&name.as_str()) {
                headers.append(name, value);
            }
        }
        if let (false, Some(secret)) = (matches!(target.auth, AuthScheme::None), target.credential) {
            if !target.placement.accepts(target.auth) {
                return Err(ApiError::plugin_fault(format!(
                    "Plugin `{plugin}` asks for the key of provider `{}` in the {}, but the operator allows only the {}; \
                     the request was not sent. The gateway operator must check the plugin file, or set providers.{}.auth if the plugin is right.",
                    target.provider,
                    describe_scheme(target.auth),
                    target.placement,
                    target.provider
                )));
            }
            target.placement.attach(secret, &mut headers, &mut url).map_err(|_| {
                ApiError::internal(format!(
                    "The API key of provider `{}` is not a valid header value.",
                    target.provider
                ))
            })?;
        }
        let mut request = reqwest::Request::new(method, url);
        *request.headers_mut() = headers;
        if !req.body.is_empty() {
            *request.body_mut() = Some(req.body.into());
        }
        Ok(request)
    }

    /// Sends and waits for the response headers (the first-byte timeout), never past `deadline`.
    pub async fn send(
        &self,
        provider: &str,
        mut request: reqwest::Request,
        deadline: Instant,
    ) -> Result<reqwest::Response, ApiError> {
        // The attempt's trace context, for a provider that traces too.
        crate::telemetry::inject(request.headers_mut());
        let first_byte = Instant::now() + self.config.first_byte_timeout;
        let (limit, what, after) = if first_byte < deadline {
            (first_byte, "answer", self.config.first_byte_timeout)
        } else {
            (deadline, "finish", self.config.total_timeout)
        };
        match tokio::time::timeout_at(limit, self.client().execute(request)).await {
            Err(_) => Err(ApiError::upstream_timeout(provider, what, after)),
            Ok(Err(e)) if e.is_timeout() => {
                Err(ApiError::upstream_timeout(provider, "connect", self.config.connect_timeout))
            }
            Ok(Err(e)) => Err(ApiError::upstream_unreachable(provider, error_chain(&without_query(e)))),
            Ok(Ok(r)) if r.status().is_redirection() => Err(ApiError::upstream_redirect(provider, r.status().as_u16())),
            // Errors reading the body (`chunk`, `bytes_stream`) carry no URL.
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Reads a whole (bounded) response into the canonical form for a plugin.
    pub async fn read(
        &self,
        provider: &str,
        mut response: reqwest::Response,
        deadline: Instant,
    ) -> Result<HttpResponse, ApiError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned())))
            .collect();
        let limit = self.config.max_response_bytes;
        let mut body = Vec::with_capacity(response.content_length().map_or(8 * 1024, |n| (n as usize).min(limit)));
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(ApiError::upstream_timeout(provider, "finish", self.config.total_timeout)),
                Ok(Err(e)) => return Err(ApiError::upstream_unreachable(provider, error_chain(&without_query(e)))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > limit {
                        return Err(ApiError::upstream_unreachable(
                            provider,
                            format!("the response is larger than {limit} bytes (upstream.max_response_bytes)"),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        Ok(HttpResponse { status, headers, body })
    }
}

/// How long the provider asks us to wait: `retry-after-ms` (OpenAI's), else `Retry-After` in
/// seconds or as an HTTP date.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()) {
        return Some(Duration::from_millis(ms));
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// A provider error seen with HTTP `status`: a 5xx is transient whatever the plugin said (the
/// host decides what may be retried); a 429 is as the plugin says (a billing state is not
/// retryable, reference 1.7). Either carries the provider's `Retry-After` when given.
pub fn transient_by_status(mut err: ApiError, status: http::StatusCode, retry_after: Option<Duration>) -> ApiError {
    if status.is_server_error() {
        err.retryable = true;
    }
    if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        err.retry_after = retry_after.or(err.retry_after);
    }
    err
}

/// The error without its URL's query, where a key placed as a query parameter would be.
fn without_query(mut e: reqwest::Error) -> reqwest::Error {
    if let Some(url) = e.url_mut() {
        url.set_query(None);
    }
    e
}

/// An error and its causes on one line (reqwest hides the useful part in the chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A chunk of a provider's stream, as the SSE splitter wants it.
pub type ByteChunk = Result<Bytes, reqwest::Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn upstream() -> Upstream {
        let cfg = Config::from_raw(Default::default(), &std::collections::BTreeMap::new()).unwrap();
        Upstream::new(cfg.upstream).unwrap()
    }

    fn plugin_request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn credential_goes_where_the_operator_allows_and_never_off_origin() {
        let up = upstream();
        let base = url::Url::parse("https://dashscope-intl.aliyuncs.com/compatible-mode/v1").unwrap();
        let secret = SecretString::from("sk-secret");
        let x_api_key = KeyPlacement::from_config(Some("x-api-key"), None, None).unwrap();
        for (auth, placement, check) in [
            (AuthScheme::Bearer, KeyPlacement::bearer(), "authorization"),
            (AuthScheme::Header("X-Api-Key".into()), x_api_key, "x-api-key"),
        ] {
            let target = Target {
                provider: "qwen",
                base_url: &base,
                auth: &auth,
                credential: Some(&secret),
                placement: &placement,
            };
            let req = up
                .prepare(
                    &target,
                    "qwen",
                    plugin_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"),
                )
                .unwrap();
            let v = req.headers().get(check).unwrap();
            assert!(v.is_sensitive());
            assert!(v.to_str().unwrap().ends_with("sk-secret"));
        }
        let auth = AuthScheme::Query("key".into());
        let placement = KeyPlacement::Query { name: "key".into() };
        let target =
            Target { provider: "qwen", base_url: &base, auth: &auth, credential: Some(&secret), placement: &placement };
        let req = up.prepare(&target, "qwen", plugin_request("https://dashscope-intl.aliyuncs.com/x?a=1")).unwrap();
        assert_eq!(req.url().query(), Some("a=1&key=sk-secret"));

        let auth = AuthScheme::Bearer;
        let bearer = KeyPlacement::bearer();
        let target =
            Target { provider: "qwen", base_url: &base, auth: &auth, credential: Some(&secret), placement: &bearer };
        let err = up.prepare(&target, "qwen", plugin_request("https://evil.example/steal")).unwrap_err();
        assert_eq!(err.status, 502);
        assert!(!err.message.contains("sk-secret"));
    }

    #[test]
    fn a_plugin_asking_for_another_header_or_scheme_gets_no_key() {
        let up = upstream();
        let base = url::Url::parse("https://api.openai.com/v1").unwrap();
        let secret = SecretString::from("sk-secret");
        let bearer = KeyPlacement::bearer();
        for auth in [
            AuthScheme::Header("host".into()),
            AuthScheme::Header("authorization".into()),
            AuthScheme::Query("key".into()),
        ] {
            let target = Target {
                provider: "openai",
                base_url: &base,
                auth: &auth,
                credential: Some(&secret),
                placement: &bearer,
            };
            let err = up
                .prepare(&target, "openai", plugin_request("https://api.openai.com/v1/chat/completions"))
                .unwrap_err();
            assert_eq!((err.status.as_u16(), err.code.as_deref()), (502, Some("plugin_error")), "{auth:?}");
            assert!(
                err.message.contains("providers.openai.auth") && !err.message.contains("sk-secret"),
                "{}",
                err.message
            );
        }
        // A plugin that asks for no key gets none, wherever the operator would put it.
        let target = Target {
            provider: "openai",
            base_url: &base,
            auth: &AuthScheme::None,
            credential: Some(&secret),
            placement: &bearer,
        };
        let req = up.prepare(&target, "openai", plugin_request("https://api.openai.com/v1/chat/completions")).unwrap();
        assert!(req.headers().get("authorization").is_none());
    }

    #[test]
    fn each_serving_thread_has_a_pool_of_its_own_and_other_threads_share_one() {
        let cfg = Config::from_raw(Default::default(), &std::collections::BTreeMap::new()).unwrap();
        let up = Upstream::with_pools(cfg.upstream, 2).unwrap();
        assert_eq!(up.clients.len(), 3);
        assert!(std::ptr::eq(up.client(), &up.clients[2]));
        for index in 0..2 {
            let up = up.clone();
            std::thread::spawn(move || {
                crate::serving::enter(index);
                assert!(std::ptr::eq(up.client(), &up.clients[index]));
            })
            .join()
            .unwrap();
        }
        // A serving thread of a gateway with more threads than this one has pools: the shared one.
        std::thread::spawn(move || {
            crate::serving::enter(7);
            assert!(std::ptr::eq(up.client(), &up.clients[2]));
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn a_transport_error_never_shows_a_key_from_the_query() {
        let up = upstream();
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let base = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        let secret = SecretString::from("sk-query-secret");
        let auth = AuthScheme::Query("key".into());
        let placement = KeyPlacement::Query { name: "key".into() };
        let target = Target {
            provider: "gemini",
            base_url: &base,
            auth: &auth,
            credential: Some(&secret),
            placement: &placement,
        };
        let request = up.prepare(&target, "gemini", plugin_request("http://127.0.0.1:1/v1/chat?alt=sse")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = up.send("gemini", request, deadline).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("upstream_unreachable"), "{}", err.message);
        assert!(err.message.contains("127.0.0.1:1"), "still says where: {}", err.message);
        assert!(!err.message.contains("sk-query-secret"), "{}", err.message);
    }
}
