//! Checks of what a plugin returns. A result that fails one is a
//! [`crate::PluginFault::Malformed`]: the host never sends a request it cannot build correctly
//! nor forwards a status or a cost it cannot represent.
//!
//! Each check returns `Err(what)` with a sentence fragment naming the offending field.

use crate::canonical::{
    Capabilities, ChatResponse, EmbeddingsResponse, HttpRequest, ModelInfo, ProviderError, RawCost, StreamChunk,
};

/// An absolute `http`/`https` URL with a host.
pub(crate) fn http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http(s) URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}

/// A request the host can send as is: a valid method, an absolute http(s) URL, and header names
/// and values `http` accepts.
pub(crate) fn http_request(request: &HttpRequest) -> Result<(), String> {
    if request.method.is_empty() || http::Method::from_bytes(request.method.as_bytes()).is_err() {
        return Err(format!("method {:?} is not a valid HTTP method", request.method));
    }
    http_url(&request.url).map_err(|e| format!("url {e}"))?;
    for (name, value) in &request.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("header name {name:?} is not a valid HTTP header name"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!("the value of header {name:?} is not a valid HTTP header value"));
        }
    }
    Ok(())
}

/// A provider error's status must be an HTTP status the host can answer with.
pub(crate) fn provider_error(error: &ProviderError) -> Result<(), String> {
    if !(100..=599).contains(&error.status) {
        return Err(format!("provider-error status {} is not an HTTP status code", error.status));
    }
    Ok(())
}

/// Exact decimal text (`0.000123`) in an ISO 4217 code (`USD`): the host meters with it.
fn raw_cost(cost: &RawCost) -> Result<(), String> {
    let currency_ok = cost.currency.len() == 3 && cost.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(format!("raw-cost currency {:?} is not an ISO 4217 code", cost.currency));
    }
    let (int, frac) = match cost.amount.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (cost.amount.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return Err(format!("raw-cost amount {:?} is not a non-negative decimal", cost.amount));
    }
    Ok(())
}

pub(crate) fn chat_response(response: &ChatResponse) -> Result<(), String> {
    response.raw_cost.as_ref().map_or(Ok(()), raw_cost)
}

pub(crate) fn stream_chunks(chunks: &[StreamChunk]) -> Result<(), String> {
    chunks.iter().filter_map(|c| c.raw_cost.as_ref()).try_for_each(raw_cost)
}

pub(crate) fn models(models: &[ModelInfo]) -> Result<(), String> {
    match models.iter().find(|m| m.id.is_empty()) {
        Some(_) => Err("a model id is empty".to_owned()),
        None => Ok(()),
    }
}

/// Vectors the host can encode: finite numbers (JSON has no NaN or infinity), all of one
/// non-zero length.
pub(crate) fn embeddings_response(response: &EmbeddingsResponse) -> Result<(), String> {
    let Some(first) = response.embeddings.first() else {
        return Ok(());
    };
    if first.is_empty() {
        return Err("embedding 0 is empty".to_owned());
    }
    for (index, vector) in response.embeddings.iter().enumerate() {
        if vector.len() != first.len() {
            return Err(format!("embedding {index} has {} dimensions, embedding 0 has {}", vector.len(), first.len()));
        }
        if vector.iter().any(|value| !value.is_finite()) {
            return Err(format!("embedding {index} holds a value that is not a finite number"));
        }
    }
    Ok(())
}

/// At most this many native APIs, each a short lowercase name: the list is kept for the
/// plugin's lifetime and shown by `/admin/plugins`.
const MAX_NATIVE_APIS: usize = 16;

pub(crate) fn capabilities(capabilities: &Capabilities) -> Result<(), String> {
    if capabilities.native_apis.len() > MAX_NATIVE_APIS {
        return Err(format!("capabilities name more than {MAX_NATIVE_APIS} native APIs"));
    }
    let name_ok = |name: &str| {
        (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match capabilities.native_apis.iter().find(|name| !name_ok(name)) {
        Some(name) => Err(format!("native API name {name:?} is not a lowercase name of at most 64 bytes")),
        None => Ok(()),
    }
}

/// Check both sides of a `result<T, provider-error>`.
pub(crate) fn provider_result<T>(
    result: &Result<T, ProviderError>,
    ok: impl FnOnce(&T) -> Result<(), String>,
) -> Result<(), String> {
    match result {
        Ok(value) => ok(value),
        Err(error) => provider_error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: headers.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect(),
            body: vec![],
        }
    }

    #[test]
    fn accepts_a_plain_post() {
        let ok = request("POST", "https://api.example.com/v1/chat", &[("content-type", "application/json")]);
        assert_eq!(http_request(&ok), Ok(()));
    }

    #[test]
    fn refuses_what_the_host_cannot_send() {
        for (bad, needle) in [
            (request("PO ST", "https://a.b/", &[]), "method"),
            (request("", "https://a.b/", &[]), "method"),
            (request("POST", "/v1/chat", &[]), "url"),
            (request("POST", "ftp://a.b/x", &[]), "http(s)"),
            (request("POST", "https://a.b/", &[("bad name", "x")]), "header name"),
            (request("POST", "https://a.b/", &[("x-a", "line\nbreak")]), "value of header"),
        ] {
            let err = http_request(&bad).err().unwrap_or_default();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn raw_cost_must_be_exact_decimal() {
        let cost = |currency: &str, amount: &str| RawCost { currency: currency.into(), amount: amount.into() };
        assert_eq!(raw_cost(&cost("USD", "0.000123")), Ok(()));
        assert_eq!(raw_cost(&cost("CNY", "12")), Ok(()));
        for (c, a) in [("usd", "1"), ("USD", "1e-6"), ("USD", "-1"), ("USD", "1."), ("USD", ".5"), ("USD", "")] {
            assert!(raw_cost(&cost(c, a)).is_err(), "{c} {a}");
        }
    }

    #[test]
    fn provider_error_status_must_be_http() {
        let error = |status| ProviderError {
            status,
            error_type: "x".into(),
            code: None,
            message: "m".into(),
            retryable: false,
        };
        assert_eq!(provider_error(&error(429)), Ok(()));
        assert!(provider_error(&error(0)).is_err());
        assert!(provider_error(&error(600)).is_err());
    }
}
