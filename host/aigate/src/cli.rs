//! The operator subcommands of the `aigate` binary: `migrate`, `keys`,
//! `prices`, `usage`, `orgs`. Each runs one [`crate::admin`] operation
//! against the configured database and prints the result.

use std::path::PathBuf;

use clap::Subcommand;

use crate::admin::{self, CreateKey, OrgSettings, SetPrice, UsageQuery};
use crate::config::Config;
use crate::server::open_store;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key (and its org if needed). The key is printed once, on the last line.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: Option<String>,
        /// Expire the key after this many days (0 to 36500).
        #[arg(long, allow_hyphen_values = true)]
        expires_in_days: Option<u32>,
        /// Requests per minute allowed for this key.
        #[arg(long, allow_hyphen_values = true)]
        rpm: Option<u32>,
        /// Tokens per minute allowed for this key.
        #[arg(long, allow_hyphen_values = true)]
        tpm: Option<u64>,
        /// Models the key may call, comma-separated names or patterns (`qwen:*,smart`);
        /// default: every model. A pattern matching no model here is refused.
        #[arg(long)]
        models: Option<String>,
    },
    /// List an org's keys (prefixes only: keys are stored hashed).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke the key with this prefix (as `keys list` shows it).
    Revoke { prefix: String },
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Add the shipped list prices (prices/*.toml, built in), or a file's, for models that have
    /// no global rule yet: never overrides a rule an operator set.
    Seed {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Set a price rule: prices per million tokens, as decimals.
    Set {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        #[arg(long, allow_hyphen_values = true)]
        input: String,
        #[arg(long, allow_hyphen_values = true)]
        output: String,
        #[arg(long, allow_hyphen_values = true)]
        cached_input: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        reasoning_output: Option<String>,
        /// Only for this org (default: every org).
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// RFC 3339 (default: now).
        #[arg(long)]
        effective_from: Option<String>,
    },
    /// List every price rule.
    List,
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Set an org's markup (basis points) and/or monthly budget.
    Set {
        org: String,
        /// Basis points added to every billed cost, 0 to 100000 (1000 = +10 %).
        #[arg(long, allow_hyphen_values = true)]
        markup_bps: Option<u32>,
        /// Decimal amount, or "none".
        #[arg(long)]
        monthly_budget: Option<String>,
        /// The one currency the budget counts (default: [billing] currency).
        #[arg(long, requires = "monthly_budget")]
        budget_currency: Option<String>,
        /// Models every key of the org may call (`qwen:*,smart`); "" allows every model.
        #[arg(long)]
        models: Option<String>,
    },
}

/// What an admin subcommand asks for.
#[derive(Debug)]
pub enum AdminCommand {
    Migrate,
    Keys(KeysCommand),
    Prices(PricesCommand),
    Usage { org: String, from: Option<String>, to: Option<String> },
    Orgs(OrgsCommand),
}

/// Prints a line on stdout; a closed pipe (`| head`) is not an error.
fn out(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    out(serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs one admin command against the configured database.
pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let result = run_on(config, &store, command).await;
    store.close().await;
    result
}

async fn run_on(config: &Config, store: &aigate_store::Store, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Migrate => {
            let seeded = admin::seed_prices(store, None).await?;
            out(format!(
                "migrations applied ({}); shipped price rules: {} added, {} kept (models already priced)",
                store.backend(),
                seeded.added,
                seeded.kept
            ));
        }
        AdminCommand::Keys(KeysCommand::Create { org, name, expires_in_days, rpm, tpm, models }) => {
            let known = admin::KnownModels::of(config, &crate::reload::RouteTable::of(config));
            let request = CreateKey { org, name, expires_in_days, rpm, tpm, models };
            let key = admin::create_key_in(store, &request, &known).await?;
            eprintln!(
                "org {}: key {} created (prefix {}). Store it now: it is not shown again.",
                key.org, key.name, key.prefix
            );
            out(&key.key);
        }
        AdminCommand::Keys(KeysCommand::List { org }) => print_json(&admin::list_keys(store, &org).await?)?,
        AdminCommand::Keys(KeysCommand::Revoke { prefix }) => {
            admin::revoke_key(store, &prefix).await?;
            out(format!("revoked {prefix} (every replica stops accepting it within the key cache TTL)"));
        }
        AdminCommand::Prices(PricesCommand::Seed { file }) => {
            let seeded = admin::seed_prices(store, file.as_deref()).await?;
            let from = file.map_or("the shipped price files".to_owned(), |f| f.display().to_string());
            out(format!(
                "{} price rules added from {from}; {} kept as they were (their model already has a global rule)",
                seeded.added, seeded.kept
            ));
        }
        AdminCommand::Prices(PricesCommand::Set {
            provider,
            model,
            input,
            output,
            cached_input,
            reasoning_output,
            org,
            currency,
            effective_from,
        }) => {
            let rule = admin::set_price(
                store,
                &SetPrice {
                    provider,
                    model,
                    input,
                    output,
                    cached_input,
                    reasoning_output,
                    org,
                    currency,
                    effective_from,
                },
                &config.billing.currency,
            )
            .await?;
            print_json(&rule)?;
        }
        AdminCommand::Prices(PricesCommand::List) => print_json(&admin::list_prices(store).await?)?,
        AdminCommand::Usage { org, from, to } => {
            let report = admin::usage(store, &UsageQuery { org, from, to, ..Default::default() }).await?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            print_json(&report)?;
        }
        AdminCommand::Orgs(OrgsCommand::Set { org, markup_bps, monthly_budget, budget_currency, models }) => {
            let known = admin::KnownModels::of(config, &crate::reload::RouteTable::of(config));
            let settings = OrgSettings { markup_bps, monthly_budget, budget_currency, models };
            print_json(&admin::update_org_in(store, &org, &settings, &config.billing.currency, &known).await?)?;
        }
    }
    Ok(())
}
