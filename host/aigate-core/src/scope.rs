//! Model scopes: the model names a key or an organisation may call.
//!
//! A scope is a list of names or patterns (`qwen:*`, `smart`, `openai:gpt-4o*`), written as
//! text separated by commas. `*` matches any run of characters (none included); nothing else is
//! special. A model is allowed when any pattern matches its whole name. No scope (an empty
//! list) allows every model.

/// Longest scope text accepted (all patterns and commas).
pub const MAX_SCOPE_CHARS: usize = 2_000;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelScope {
    patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a model scope is at most {MAX_SCOPE_CHARS} characters")]
    TooLong,
    #[error("`{0}` is not a model name or pattern: use letters, digits and `-_.:/@*`")]
    Invalid(String),
}

impl ModelScope {
    /// Parses `qwen:*,smart`. Blank text means no scope (`None`: every model).
    pub fn parse(text: &str) -> Result<Option<ModelScope>, ScopeError> {
        if text.chars().count() > MAX_SCOPE_CHARS {
            return Err(ScopeError::TooLong);
        }
        let mut patterns = Vec::new();
        for raw in text.split(',') {
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let ok = p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/@*".contains(c));
            if !ok {
                return Err(ScopeError::Invalid(p.to_owned()));
            }
            if !patterns.iter().any(|q: &String| q == p) {
                patterns.push(p.to_owned());
            }
        }
        Ok((!patterns.is_empty()).then_some(ModelScope { patterns }))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `model` (a client's model name, `provider:model` or a route) is allowed.
    pub fn allows(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| glob(p, model))
    }

    /// The stored form: patterns joined by commas.
    pub fn to_text(&self) -> String {
        self.patterns.join(",")
    }
}

/// Whether `pattern` (with `*` for any run of characters) matches all of `text`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let s = ModelScope::parse("qwen:*, smart ,openai:gpt-4o*").unwrap().unwrap();
        assert!(s.allows("qwen:qwen-max"));
        assert!(s.allows("qwen:"), "`*` matches nothing too");
        assert!(s.allows("smart"));
        assert!(!s.allows("smarter"));
        assert!(s.allows("openai:gpt-4o-mini"));
        assert!(!s.allows("openai:gpt-5"));
        assert!(!s.allows("anthropic:claude"));
        assert_eq!(s.to_text(), "qwen:*,smart,openai:gpt-4o*");
    }

    #[test]
    fn blank_means_every_model_and_bad_patterns_are_refused() {
        assert_eq!(ModelScope::parse("").unwrap(), None);
        assert_eq!(ModelScope::parse(" , ").unwrap(), None);
        assert!(matches!(ModelScope::parse("qwen:*;drop"), Err(ScopeError::Invalid(_))));
        assert!(matches!(ModelScope::parse(&"a".repeat(MAX_SCOPE_CHARS + 1)), Err(ScopeError::TooLong)));
    }

    #[test]
    fn glob_backtracks() {
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(glob("a*c", "abcbc"));
        assert!(!glob("a*c", "abcb"));
        assert!(glob("*", ""));
        assert!(!glob("", "a"));
        assert!(glob("**x", "yyx"));
    }
}
