//! Identifiers and names of tenants.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An organisation (tenant): the unit of billing, budgets and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct OrgId(pub i64);

/// An API key record (not the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub i64);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub const ORG_NAME_MAX_CHARS: usize = 64;

/// A validated organisation name: 1 to 64 characters, each an ASCII letter,
/// an ASCII digit, `-`, `_` or `.`. Names appear in CLI arguments, URLs and
/// logs, so they are kept free of spaces, quotes and anything needing escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgNameError {
    #[error("organisation name is empty; use 1 to {ORG_NAME_MAX_CHARS} letters, digits, `-`, `_` or `.`")]
    Empty,
    #[error("organisation name is {0} characters long; the limit is {ORG_NAME_MAX_CHARS}")]
    TooLong(usize),
    #[error(
        "organisation name `{name}` contains {found:?} at position {position}; only ASCII letters, digits, `-`, `_` and `.` are allowed"
    )]
    InvalidChar { name: String, found: char, position: usize },
}

impl OrgName {
    pub fn parse(name: &str) -> Result<OrgName, OrgNameError> {
        if name.is_empty() {
            return Err(OrgNameError::Empty);
        }
        if let Some((position, found)) =
            name.chars().enumerate().find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            // Show at most the allowed length of the offending name.
            let shown: String = name.chars().take(ORG_NAME_MAX_CHARS).collect();
            return Err(OrgNameError::InvalidChar { name: shown, found, position });
        }
        if name.len() > ORG_NAME_MAX_CHARS {
            return Err(OrgNameError::TooLong(name.len()));
        }
        Ok(OrgName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for OrgName {
    type Err = OrgNameError;
    fn from_str(s: &str) -> Result<OrgName, OrgNameError> {
        OrgName::parse(s)
    }
}

impl<'de> Deserialize<'de> for OrgName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OrgName, D::Error> {
        let s = String::deserialize(d)?;
        OrgName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in ["a", "acme", "Acme-Corp_2.0", "x".repeat(64).as_str(), "...", "0"] {
            assert_eq!(OrgName::parse(ok).map(|n| n.as_str().to_owned()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_odd_names_clearly() {
        assert_eq!(OrgName::parse(""), Err(OrgNameError::Empty));
        assert_eq!(OrgName::parse(&"x".repeat(65)), Err(OrgNameError::TooLong(65)));
        for bad in ["Robert'); DROP TABLE orgs;--", "a b", "ünï", "a/b", "a\0b", "a\nb", "tab\t", "é"] {
            let err = OrgName::parse(bad).unwrap_err();
            assert!(matches!(err, OrgNameError::InvalidChar { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("only ASCII letters"), "{err}");
        }
        let err = OrgName::parse("Robert'); DROP TABLE orgs;--").unwrap_err();
        assert_eq!(
            err,
            OrgNameError::InvalidChar { name: "Robert'); DROP TABLE orgs;--".into(), found: '\'', position: 6 }
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<OrgName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<OrgName>("\"not ok\"").is_err());
    }
}
