//! Where a provider key may go: the origin and the header or query parameter
//! the operator allows, never what a plugin asks for.
//!
//! A plugin is untrusted code. It declares an auth scheme and a default base
//! URL, but the host decides: a key is attached only to the origin of the
//! operator's provider entry (its `base_url`, or the built-in default of a
//! shipped provider the operator named in config) and only in the place the
//! entry allows ([`KeyPlacement`]). A plugin whose declared scheme differs gets
//! no key and fails that request (`upstream.rs`).

use aigate_plugins::canonical::AuthScheme;
use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

/// The host's own defaults for the providers it ships plugins for. They apply
/// to a provider entry named like its plugin (`[providers.qwen]`, plugin
/// `qwen`), never to another name on the same plugin (`deepseek` on `openai`
/// must set its own `base_url`).
pub struct BuiltinProvider {
    pub name: &'static str,
    pub base_url: &'static str,
    pub placement: fn() -> KeyPlacement,
}

pub const BUILTIN_PROVIDERS: [BuiltinProvider; 4] = [
    BuiltinProvider {
        name: "qwen",
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        placement: KeyPlacement::bearer,
    },
    BuiltinProvider { name: "openai", base_url: "https://api.openai.com/v1", placement: KeyPlacement::bearer },
    BuiltinProvider {
        name: "anthropic",
        base_url: "https://api.anthropic.com/v1",
        placement: || KeyPlacement::Header { name: HeaderName::from_static("x-api-key"), scheme: None },
    },
    BuiltinProvider {
        name: "gemini",
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        placement: || KeyPlacement::Header { name: HeaderName::from_static("x-goog-api-key"), scheme: None },
    },
];

/// The built-in defaults of provider `name` using plugin `plugin`, if any.
pub fn builtin(name: &str, plugin: &str) -> Option<&'static BuiltinProvider> {
    BUILTIN_PROVIDERS.iter().find(|b| b.name == name && b.name == plugin)
}

/// Where the operator allows a provider's key: a header (`scheme` is the word
/// before the key, like `Bearer`) or a query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    Header { name: HeaderName, scheme: Option<String> },
    Query { name: String },
}

/// Headers a key may never go in: the transport's own, which proxies and
/// servers log or act on.
const FORBIDDEN_HEADERS: [&str; 8] =
    ["host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"];

impl KeyPlacement {
    /// `Authorization: Bearer <key>`, the default of a provider entry without `auth`.
    pub fn bearer() -> Self {
        KeyPlacement::Header { name: http::header::AUTHORIZATION, scheme: Some("Bearer".to_owned()) }
    }

    /// Validates the config's `auth` table: exactly one of `header` or `query`,
    /// `scheme` only with `header`. Errors say what to write.
    pub fn from_config(header: Option<&str>, scheme: Option<&str>, query: Option<&str>) -> Result<Self, String> {
        match (header, query) {
            (Some(name), None) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a valid header name"))?;
                if FORBIDDEN_HEADERS.contains(&name.as_str()) {
                    return Err(format!("a key may not go in the `{name}` header"));
                }
                let scheme = match scheme {
                    Some(s) if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                        return Err(format!("scheme `{s}` must be one word like `Bearer`"));
                    }
                    s => s.map(str::to_owned),
                };
                Ok(KeyPlacement::Header { name, scheme })
            }
            (None, Some(name)) if scheme.is_some() => {
                Err(format!("`scheme` goes with `header`, not with `query = \"{name}\"`"))
            }
            (None, Some(name))
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && !b"&=#%+".contains(&b)) =>
            {
                Err(format!("`{name}` is not a plain query parameter name"))
            }
            (None, Some(name)) => Ok(KeyPlacement::Query { name: name.to_owned() }),
            _ => Err("set exactly one of `header` (with an optional `scheme`) or `query`".to_owned()),
        }
    }

    /// Whether a plugin's declared scheme asks for the key exactly here.
    /// `none` asks for no key and is always accepted (nothing is attached).
    pub fn accepts(&self, declared: &AuthScheme) -> bool {
        match (declared, self) {
            (AuthScheme::None, _) => true,
            (AuthScheme::Bearer, KeyPlacement::Header { name, scheme: Some(s) }) => {
                name == http::header::AUTHORIZATION && s.eq_ignore_ascii_case("bearer")
            }
            (AuthScheme::Header(declared), KeyPlacement::Header { name, scheme: None }) => {
                declared.eq_ignore_ascii_case(name.as_str())
            }
            (AuthScheme::Query(declared), KeyPlacement::Query { name }) => declared == name,
            _ => false,
        }
    }

    /// Attaches the key here. The header value is marked sensitive (never
    /// logged by the HTTP stack).
    pub fn attach(
        &self,
        secret: &SecretString,
        headers: &mut http::HeaderMap,
        url: &mut url::Url,
    ) -> Result<(), InvalidKey> {
        match self {
            KeyPlacement::Header { name, scheme } => {
                let value = match scheme {
                    Some(s) => HeaderValue::from_str(&format!("{s} {}", secret.expose_secret())),
                    None => HeaderValue::from_str(secret.expose_secret()),
                };
                let mut value = value.map_err(|_| InvalidKey)?;
                value.set_sensitive(true);
                headers.insert(name.clone(), value);
            }
            KeyPlacement::Query { name } => {
                url.query_pairs_mut().append_pair(name, secret.expose_secret());
            }
        }
        Ok(())
    }
}

/// A key that cannot be put in a header (control characters).
#[derive(Debug)]
pub struct InvalidKey;

impl std::fmt::Display for KeyPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPlacement::Header { name, scheme: Some(s) } => write!(f, "header `{name}: {s} <key>`"),
            KeyPlacement::Header { name, scheme: None } => write!(f, "header `{name}: <key>`"),
            KeyPlacement::Query { name } => write!(f, "query parameter `{name}=<key>`"),
        }
    }
}

/// How a plugin's declared scheme reads in an error message.
pub fn describe_scheme(declared: &AuthScheme) -> String {
    match declared {
        AuthScheme::None => "no key".to_owned(),
        AuthScheme::Bearer => "header `authorization: Bearer <key>`".to_owned(),
        AuthScheme::Header(name) => format!("header `{name}: <key>`"),
        AuthScheme::Query(name) => format!("query parameter `{name}=<key>`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_accepts_only_the_same_scheme() {
        let bearer = KeyPlacement::bearer();
        assert!(bearer.accepts(&AuthScheme::Bearer));
        assert!(bearer.accepts(&AuthScheme::None));
        assert!(!bearer.accepts(&AuthScheme::Header("authorization".into())));
        assert!(!bearer.accepts(&AuthScheme::Header("host".into())));
        assert!(!bearer.accepts(&AuthScheme::Query("key".into())));
        let header = KeyPlacement::from_config(Some("X-Api-Key"), None, None).unwrap();
        assert!(header.accepts(&AuthScheme::Header("x-api-key".into())));
        assert!(!header.accepts(&AuthScheme::Header("x-other".into())));
        assert!(!header.accepts(&AuthScheme::Bearer));
        let query = KeyPlacement::from_config(None, None, Some("key")).unwrap();
        assert!(query.accepts(&AuthScheme::Query("key".into())));
        assert!(!query.accepts(&AuthScheme::Query("api_key".into())));
    }

    #[test]
    fn config_placements_are_validated() {
        for (header, scheme, query) in [
            (Some("host"), None, None),
            (Some("Content-Length"), None, None),
            (Some("bad header"), None, None),
            (Some("authorization"), Some("Bear er"), None),
            (None, Some("Bearer"), Some("key")),
            (None, None, Some("a&b")),
            (Some("x"), None, Some("key")),
            (None, None, None),
        ] {
            assert!(KeyPlacement::from_config(header, scheme, query).is_err(), "{header:?} {scheme:?} {query:?}");
        }
        assert_eq!(
            KeyPlacement::from_config(Some("Authorization"), Some("Bearer"), None).unwrap(),
            KeyPlacement::bearer()
        );
    }

    #[test]
    fn builtins_apply_only_under_their_own_name() {
        assert!(builtin("qwen", "qwen").is_some());
        assert!(builtin("deepseek", "openai").is_none());
        assert!(builtin("openai", "faulty").is_none());
    }
}
