//! The client that talks to providers: one pooled HTTP(S) client (rustls,
//! TCP_NODELAY, HTTP/2 where offered), timeouts, and credential injection.
//!
//! Plugins build requests; this module decides whether to send them. It
//! refuses any URL outside the provider's configured origin, because it is
//! about to attach that provider's secret to it.

use std::time::Duration;

use aigate_plugins::canonical::{AuthScheme, HttpRequest, HttpResponse};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::error::ApiError;

/// Headers the transport owns; a plugin's value for them is dropped.
const TRANSPORT_HEADERS: [&str; 6] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"];

#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    pub config: UpstreamConfig,
}

/// What the host knows about the provider a request goes to.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub provider: &'a str,
    pub base_url: &'a url::Url,
    pub auth: &'a AuthScheme,
    pub credential: Option<&'a SecretString>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, reqwest::Error> {
        // rustls with ring (no C toolchain beyond cc, quick to build); a second
        // install is refused harmlessly when a provider is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("aigate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Upstream { client, config })
    }

    /// Turns a plugin's request into a sendable one: checks it, drops
    /// transport headers, adds the credential as the plugin's scheme says.
    pub fn prepare(&self, target: &Target<'_>, plugin: &str, req: HttpRequest) -> Result<reqwest::Request, ApiError> {
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ApiError::plugin_fault(format!("Plugin `{plugin}` built a request with an invalid method.")))?;
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
                return Err(ApiError::plugin_fault(format!("Plugin `{plugin}` built a request with an invalid header.")));
            };
            if !TRANSPORT_HEADERS.contains(&name.as_str()) {
                headers.append(name, value);
            }
        }
        match (target.auth, target.credential) {
            (AuthScheme::None, _) | (_, None) => {}
            (AuthScheme::Bearer, Some(secret)) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
                    .map_err(|_| ApiError::internal(format!("The API key of provider `{}` is not a valid header value.", target.provider)))?;
                v.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, v);
            }
            (AuthScheme::Header(name), Some(secret)) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ApiError::plugin_fault(format!("Plugin `{plugin}` declares an invalid auth header name.")))?;
                let mut v = HeaderValue::from_str(secret.expose_secret())
                    .map_err(|_| ApiError::internal(format!("The API key of provider `{}` is not a valid header value.", target.provider)))?;
                v.set_sensitive(true);
                headers.insert(name, v);
            }
            (AuthScheme::Query(name), Some(secret)) => {
                url.query_pairs_mut().append_pair(name, secret.expose_secret());
            }
        }
        let mut request = reqwest::Request::new(method, url);
        *request.headers_mut() = headers;
        if !req.body.is_empty() {
            *request.body_mut() = Some(req.body.into());
        }
        Ok(request)
    }

    /// Sends and waits for the response headers (the first-byte timeout), never past `deadline`.
    pub async fn send(&self, provider: &str, request: reqwest::Request, deadline: Instant) -> Result<reqwest::Response, ApiError> {
        let first_byte = Instant::now() + self.config.first_byte_timeout;
        let (limit, what, after) = if first_byte < deadline {
            (first_byte, "answer", self.config.first_byte_timeout)
        } else {
            (deadline, "finish", self.config.total_timeout)
        };
        match tokio::time::timeout_at(limit, self.client.execute(request)).await {
            Err(_) => Err(ApiError::upstream_timeout(provider, what, after)),
            Ok(Err(e)) if e.is_timeout() => Err(ApiError::upstream_timeout(provider, "connect", self.config.connect_timeout)),
            Ok(Err(e)) => Err(ApiError::upstream_unreachable(provider, error_chain(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Reads a whole (bounded) response into the canonical form for a plugin.
    pub async fn read(&self, provider: &str, mut response: reqwest::Response, deadline: Instant) -> Result<HttpResponse, ApiError> {
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
                Ok(Err(e)) => return Err(ApiError::upstream_unreachable(provider, error_chain(&e))),
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
        HttpRequest { method: "POST".into(), url: url.into(), headers: vec![("content-type".into(), "application/json".into())], body: b"{}".to_vec() }
    }

    #[test]
    fn credential_is_added_by_scheme_and_never_sent_off_origin() {
        let up = upstream();
        let base = url::Url::parse("https://dashscope-intl.aliyuncs.com/compatible-mode/v1").unwrap();
        let secret = SecretString::from("sk-secret");
        for (auth, check) in [
            (AuthScheme::Bearer, "authorization"),
            (AuthScheme::Header("x-api-key".into()), "x-api-key"),
        ] {
            let target = Target { provider: "qwen", base_url: &base, auth: &auth, credential: Some(&secret) };
            let req = up.prepare(&target, "qwen", plugin_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions")).unwrap();
            let v = req.headers().get(check).unwrap();
            assert!(v.is_sensitive());
            assert!(v.to_str().unwrap().ends_with("sk-secret"));
        }
        let auth = AuthScheme::Query("key".into());
        let target = Target { provider: "qwen", base_url: &base, auth: &auth, credential: Some(&secret) };
        let req = up.prepare(&target, "qwen", plugin_request("https://dashscope-intl.aliyuncs.com/x?a=1")).unwrap();
        assert_eq!(req.url().query(), Some("a=1&key=sk-secret"));

        let auth = AuthScheme::Bearer;
        let target = Target { provider: "qwen", base_url: &base, auth: &auth, credential: Some(&secret) };
        let err = up.prepare(&target, "qwen", plugin_request("https://evil.example/steal")).unwrap_err();
        assert_eq!(err.status, 502);
        assert!(!err.message.contains("sk-secret"));
    }
}
