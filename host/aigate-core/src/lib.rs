//! AIGate domain types with no I/O: exact [`Money`], [`PriceRule`]s and the
//! rounding rule of billing ([`pricing`]), API key material ([`keys`]), ids and
//! organisation names ([`ids`]).
//!
//! Everything here is plain data and pure functions, so the server, the store
//! and the CLI agree on one definition and it is all unit-tested without I/O.

pub mod ids;
pub mod keys;
pub mod money;
pub mod pricing;
pub mod scope;

pub use ids::{KeyId, OrgId, OrgName, OrgNameError};
pub use keys::{ApiKey, KeyHash, RandomError};
pub use money::{Money, MoneyError};
pub use pricing::{PriceRule, PriceRuleError, TokenUsage, apply_markup};
pub use scope::{ModelScope, ScopeError};
