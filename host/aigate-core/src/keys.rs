//! API key material: generation, the visible prefix and the stored hash.
//!
//! A key is `sk-aig-` followed by 43 characters drawn uniformly from the 62
//! ASCII letters and digits: 43 × log2(62) ≈ 256 bits from the operating
//! system's CSPRNG (`getrandom`). Only letters and digits, so a double click
//! selects the whole key and no shell or URL escaping is ever needed.
//!
//! The plaintext is shown once, at creation. The store keeps:
//! - the **prefix**, the first [`PREFIX_CHARS`] characters (`sk-aig-` and five
//!   random ones), to let people tell their keys apart in listings and revoke
//!   one. Five random characters reveal nothing useful about the rest;
//! - the **hash**, SHA-256 of the whole plaintext as lowercase hex, to look the
//!   key up on each request.
//!
//! Why a fast unsalted hash and not a password hash (argon2, bcrypt): slow,
//! salted hashes protect *low-entropy* secrets against guessing. A 256-bit
//! random key cannot be guessed at any speed, so SHA-256 loses no security;
//! it keeps authentication in the microseconds on every request, and being
//! deterministic it allows an indexed lookup by hash (a salt would not).
//! Lookups go through a database index, so comparing in constant time buys
//! nothing either.

use std::fmt;

use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "sk-aig-";
/// Random characters after [`KEY_PREFIX`].
pub const KEY_RANDOM_CHARS: usize = 43;
/// Characters of the visible prefix kept in clear.
pub const PREFIX_CHARS: usize = 12;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The operating system's random source failed: nothing sensible can go on.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// SHA-256 of a presented or generated key, 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(String);

impl KeyHash {
    /// Hashes whatever was presented: garbage hashes to a value no key has.
    pub fn of(presented: &str) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(presented.as_bytes())))
    }

    /// A stored hash read back; `None` unless 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| KeyHash(hex.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly generated key. The plaintext exists only here: hand it to the
/// user once and store [`ApiKey::hash`] and [`ApiKey::prefix`].
pub struct ApiKey {
    plaintext: String,
    hash: KeyHash,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("prefix", &self.prefix()).field("plaintext", &"<redacted>").finish()
    }
}

impl ApiKey {
    pub fn generate() -> Result<ApiKey, RandomError> {
        let mut plaintext = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        plaintext.push_str(KEY_PREFIX);
        let mut buf = [0u8; 64];
        while plaintext.len() < KEY_PREFIX.len() + KEY_RANDOM_CHARS {
            getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
            // Rejection sampling: 248 = 4 × 62, so `b % 62` is uniform for b < 248.
            for &b in buf.iter().filter(|&&b| b < 248) {
                if plaintext.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS {
                    break;
                }
                plaintext.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        let hash = KeyHash::of(&plaintext);
        Ok(ApiKey { plaintext, hash })
    }

    pub fn plaintext(&self) -> &str {
        &self.plaintext
    }

    pub fn hash(&self) -> &KeyHash {
        &self.hash
    }

    /// The first [`PREFIX_CHARS`] characters, e.g. `sk-aig-Ab3xY`.
    pub fn prefix(&self) -> &str {
        &self.plaintext[..PREFIX_CHARS]
    }

    /// `(plaintext, hash, prefix)`.
    pub fn into_parts(self) -> (String, KeyHash, String) {
        let prefix = self.prefix().to_owned();
        (self.plaintext, self.hash, prefix)
    }

    /// Whether `presented` has the shape of a key this module generates. A
    /// cheap check to answer garbage without a lookup; it proves nothing.
    pub fn is_well_formed(presented: &str) -> bool {
        presented
            .strip_prefix(KEY_PREFIX)
            .is_some_and(|rest| rest.len() == KEY_RANDOM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = ApiKey::generate().unwrap();
        assert!(key.plaintext().starts_with("sk-aig-"));
        assert_eq!(key.plaintext().len(), 7 + 43);
        assert!(ApiKey::is_well_formed(key.plaintext()));
        assert_eq!(key.prefix().len(), 12);
        assert!(key.plaintext().starts_with(key.prefix()));
        assert_eq!(key.hash(), &KeyHash::of(key.plaintext()));
        assert_eq!(key.hash().as_str().len(), 64);
        assert!(!format!("{key:?}").contains(&key.plaintext()[12..]));
        let (plaintext, hash, prefix) = key.into_parts();
        assert_eq!(KeyHash::of(&plaintext), hash);
        assert_eq!(&plaintext[..12], prefix);
    }

    #[test]
    fn keys_are_distinct_and_use_the_whole_alphabet() {
        let keys: Vec<String> = (0..2000).map(|_| ApiKey::generate().unwrap().plaintext().to_owned()).collect();
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        let chars: HashSet<u8> = keys.iter().flat_map(|k| k.as_bytes()[7..].to_vec()).collect();
        assert_eq!(chars.len(), 62);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(KeyHash::of("abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(KeyHash::from_hex(KeyHash::of("x").as_str()), Some(KeyHash::of("x")));
        assert_eq!(KeyHash::from_hex("' OR 1=1 --"), None);
        assert_eq!(KeyHash::from_hex(&"A".repeat(64)), None);
    }

    #[test]
    fn malformed_keys_are_recognised() {
        for bad in ["", "sk-aig-", "Bearer sk-aig-x", "sk-aig-' OR 1=1 --", &format!("sk-aig-{}", "a".repeat(44))] {
            assert!(!ApiKey::is_well_formed(bad), "{bad}");
        }
    }
}
