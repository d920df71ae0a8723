//! The ledger and its daily rollups.

use std::collections::{BTreeMap, HashMap};

use aigate_core::{KeyId, Money, OrgId, TokenUsage};
use aigate_store::{
    KeyRepo, LedgerEntry, OrgSpend, RequestFilter, RequestRow, Store, StoreError, UsageFilter, UsageRepo, UsageTotals,
};
use time::{Date, Duration};

use crate::store_suite;
use crate::support::{DAY0, Rng, entry, org_with_keys, request_id, stored_client_request_ids};

fn day(n: i64) -> Date {
    (DAY0 + Duration::days(n)).date()
}

/// Totals per currency of `entries`, computed here, independently of SQL.
fn expected_totals<'a>(entries: impl IntoIterator<Item = &'a LedgerEntry>) -> Vec<UsageTotals> {
    let mut by_currency: BTreeMap<String, UsageTotals> = BTreeMap::new();
    for e in entries {
        let t = by_currency.entry(e.currency.clone()).or_insert_with(|| UsageTotals {
            currency: e.currency.clone(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            billed_cost: Money::ZERO,
            unpriced_requests: 0,
        });
        t.requests += 1;
        t.prompt_tokens += e.usage.prompt;
        t.completion_tokens += e.usage.completion;
        t.cached_tokens += e.usage.cached;
        t.reasoning_tokens += e.usage.reasoning;
        t.billed_cost = t.billed_cost.checked_add(e.billed_cost).unwrap();
        t.unpriced_requests += u64::from(e.unpriced);
    }
    by_currency.into_values().collect()
}

/// 500 random entries for two orgs, inserted in uneven batches with
/// duplicates inside batches and across them (a duplicate carries different
/// numbers: the first write must win).
async fn write_random_usage(store: &Store, seed: u64) -> (OrgId, OrgId, Vec<LedgerEntry>) {
    let (acme, acme_keys) = org_with_keys(store, "acme", 2).await;
    let (beta, beta_keys) = org_with_keys(store, "beta", 1).await;
    let owners: Vec<(OrgId, KeyId)> =
        acme_keys.iter().map(|k| (acme, *k)).chain(beta_keys.iter().map(|k| (beta, *k))).collect();
    let mut rng = Rng::new(seed);
    let mut first_written: HashMap<String, LedgerEntry> = HashMap::new();
    let mut all: Vec<LedgerEntry> = Vec::new();
    let mut produced = 0;
    let mut inserted_total = 0;
    let mut duplicates_total = 0;
    while produced < 500 {
        let size = 1 + rng.below(60) as usize;
        let mut batch = Vec::with_capacity(size);
        for _ in 0..size.min(500 - produced) {
            let &(org, key) = rng.pick(&owners);
            let reuse = !all.is_empty() && rng.below(8) == 0;
            let id = if reuse { rng.pick(&all).request_id.clone() } else { request_id() };
            let e = entry(&mut rng, org, key, id);
            batch.push(e.clone());
            all.push(e);
            produced += 1;
        }
        // A duplicate inside the same batch, too.
        if rng.below(3) == 0 {
            let mut twin = entry(&mut rng, batch[0].org_id, batch[0].key_id, batch[0].request_id.clone());
            twin.billed_cost = Money::from_nanos(1);
            batch.push(twin);
        }
        let outcome = store.insert_usage(&batch).await.unwrap();
        inserted_total += outcome.inserted;
        duplicates_total += outcome.duplicates;
        assert_eq!(outcome.inserted + outcome.duplicates, batch.len() as u64);
        for e in batch {
            first_written.entry(e.request_id.clone()).or_insert(e);
        }
    }
    assert_eq!(inserted_total, first_written.len() as u64);
    assert!(duplicates_total > 0, "the test must exercise duplicates");
    let mut kept: Vec<LedgerEntry> = first_written.into_values().collect();
    kept.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    (acme, beta, kept)
}

async fn rollups_equal_ledger_sums_exactly(store: &Store) {
    let (acme, beta, kept) = write_random_usage(store, 0x5EED).await;
    for org in [acme, beta] {
        let mine: Vec<&LedgerEntry> = kept.iter().filter(|e| e.org_id == org).collect();
        let expected = expected_totals(mine.iter().copied());
        let ledger = store.ledger_totals(org, DAY0, DAY0 + Duration::days(3)).await.unwrap();
        let summary = store.usage_summary(org, day(0), day(3)).await.unwrap();
        assert_eq!(ledger, expected, "ledger");
        assert_eq!(summary.totals, expected, "rollups");

        // Per provider/model/day too.
        let mut per_row: BTreeMap<(String, String, Date), Vec<&LedgerEntry>> = BTreeMap::new();
        for e in &mine {
            per_row.entry((e.provider.clone(), e.model.clone(), e.day())).or_default().push(e);
        }
        let mut expected_rows = Vec::new();
        for ((provider, model, d), entries) in &per_row {
            for totals in expected_totals(entries.iter().copied()) {
                expected_rows.push((*d, provider.clone(), model.clone(), totals));
            }
        }
        expected_rows.sort_by(|a, b| (a.0, &a.1, &a.2, &a.3.currency).cmp(&(b.0, &b.1, &b.2, &b.3.currency)));
        let got_rows: Vec<_> =
            summary.rows.iter().map(|r| (r.day, r.provider.clone(), r.model.clone(), r.totals.clone())).collect();
        assert_eq!(got_rows, expected_rows);

        // One day alone: `to` is the day after it.
        let one = store.usage_summary(org, day(1), day(2)).await.unwrap();
        let expected_day1 = expected_totals(mine.iter().copied().filter(|e| e.day() == day(1)));
        assert_eq!(one.totals, expected_day1);
        assert_eq!(
            store.ledger_totals(org, DAY0 + Duration::days(1), DAY0 + Duration::days(2)).await.unwrap(),
            expected_day1
        );
    }

    // Re-delivering everything changes nothing.
    let outcome = store.insert_usage(&kept).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (0, kept.len() as u64));
    let summary = store.usage_summary(acme, day(0), day(3)).await.unwrap();
    assert_eq!(summary.totals, expected_totals(kept.iter().filter(|e| e.org_id == acme)));
}

async fn spend_since_reads_the_rollups(store: &Store) {
    let (acme, _, kept) = write_random_usage(store, 7).await;
    for since in [day(0), day(1), day(2), day(3)] {
        let expected = Money::checked_sum(
            kept.iter().filter(|e| e.org_id == acme && e.currency == "USD" && e.day() >= since).map(|e| e.billed_cost),
        )
        .unwrap();
        assert_eq!(store.spend_since(acme, "USD", since).await.unwrap(), expected);
    }
    assert_eq!(store.spend_since(acme, "JPY", day(0)).await.unwrap(), Money::ZERO);
    assert_eq!(store.spend_since(OrgId(123_456), "USD", day(0)).await.unwrap(), Money::ZERO);
}

async fn prune_deletes_in_batches_and_keeps_rollups(store: &Store) {
    let (acme, beta, kept) = write_random_usage(store, 99).await;
    let before_acme = store.usage_summary(acme, day(0), day(3)).await.unwrap();
    let before_beta = store.usage_summary(beta, day(0), day(3)).await.unwrap();
    let cutoff = DAY0 + Duration::days(2);
    let older = kept.iter().filter(|e| e.created_at < cutoff).count() as u64;
    assert!(older > 7);

    assert_eq!(store.prune_ledger(cutoff, 7).await.unwrap(), older);
    assert_eq!(store.prune_ledger(cutoff, 7).await.unwrap(), 0);

    // Rollups are untouched; the ledger keeps only the last day.
    assert_eq!(store.usage_summary(acme, day(0), day(3)).await.unwrap(), before_acme);
    assert_eq!(store.usage_summary(beta, day(0), day(3)).await.unwrap(), before_beta);
    let left = store.ledger_totals(acme, DAY0, DAY0 + Duration::days(3)).await.unwrap();
    assert_eq!(left, expected_totals(kept.iter().filter(|e| e.org_id == acme && e.created_at >= cutoff)));
    // Nothing before the cutoff remains.
    assert!(store.ledger_totals(acme, DAY0, cutoff).await.unwrap().is_empty());
}

async fn a_refused_row_fails_the_whole_batch(store: &Store) {
    let (acme, keys) = org_with_keys(store, "acme", 1).await;
    let mut rng = Rng::new(3);
    let good = entry(&mut rng, acme, keys[0], request_id());
    let unknown_key = entry(&mut rng, acme, KeyId(999_999), request_id());
    let err = store.insert_usage(&[good.clone(), unknown_key]).await.unwrap_err();
    assert!(!err.is_retryable(), "a foreign key violation is permanent: {err:?}");
    assert!(store.ledger_totals(acme, DAY0, DAY0 + Duration::days(3)).await.unwrap().is_empty(), "all or nothing");

    let mut negative = good.clone();
    negative.billed_cost = Money::from_nanos(-1);
    let err = store.insert_usage(&[negative]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let mut nul = good.clone();
    nul.model = "qwen\0plus".into();
    assert!(matches!(store.insert_usage(&[nul]).await.unwrap_err(), StoreError::Invalid { .. }));
    let mut huge = good.clone();
    huge.usage.prompt = u64::MAX;
    assert!(matches!(store.insert_usage(&[huge]).await.unwrap_err(), StoreError::Invalid { .. }));

    assert_eq!(store.insert_usage(&[good]).await.unwrap().inserted, 1);
    assert_eq!(store.insert_usage(&[]).await.unwrap().inserted, 0);
}

/// Ranges are half-open: `to` is the day after the last. Rows on the first
/// and last instant of each day, split into consecutive ranges, are each
/// counted exactly once.
async fn usage_ranges_are_half_open(store: &Store) {
    let (acme, keys) = org_with_keys(store, "acme", 1).await;
    let mut rng = Rng::new(11);
    let mut rows = Vec::new();
    for d in 0..3 {
        for at in [Duration::ZERO, Duration::days(1) - Duration::microseconds(1)] {
            let mut e = entry(&mut rng, acme, keys[0], request_id());
            e.currency = "USD".into();
            e.created_at = DAY0 + Duration::days(d) + at;
            rows.push(e);
        }
    }
    store.insert_usage(&rows).await.unwrap();
    let requests = |s: &aigate_store::UsageSummary| s.totals.iter().map(|t| t.requests).sum::<u64>();
    assert_eq!(requests(&store.usage_summary(acme, day(0), day(1)).await.unwrap()), 2, "day 0 only");
    assert_eq!(requests(&store.usage_summary(acme, day(1), day(3)).await.unwrap()), 4, "days 1 and 2");
    assert_eq!(requests(&store.usage_summary(acme, day(0), day(3)).await.unwrap()), 6);
    assert_eq!(requests(&store.usage_summary(acme, day(1), day(1)).await.unwrap()), 0, "empty range");
    let cost = |s: &aigate_store::UsageSummary| s.totals[0].billed_cost;
    let first = store.usage_summary(acme, day(0), day(1)).await.unwrap();
    let second = store.usage_summary(acme, day(1), day(3)).await.unwrap();
    let whole = store.usage_summary(acme, day(0), day(3)).await.unwrap();
    assert_eq!(cost(&first).checked_add(cost(&second)).unwrap(), cost(&whole), "no day twice");
}

/// The client's request id is kept for correlation, not as a key: any number
/// of rows may share one, and an ill-formed one is dropped, never a reason to
/// refuse the row.
async fn client_request_ids_are_not_unique_and_never_refuse_a_row(store: &Store) {
    let (acme, keys) = org_with_keys(store, "acme", 1).await;
    let mut rng = Rng::new(12);
    let mut rows = Vec::new();
    for client in [Some("same"), Some("same"), Some("same"), Some("é-not-ascii"), None] {
        let mut e = entry(&mut rng, acme, keys[0], request_id());
        e.client_request_id = client.map(str::to_owned);
        rows.push(e);
    }
    let mut long = entry(&mut rng, acme, keys[0], request_id());
    long.client_request_id = Some("x".repeat(10_000));
    rows.push(long);
    let outcome = store.insert_usage(&rows).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (6, 0));
    let stored = stored_client_request_ids(store, acme).await;
    assert_eq!(stored.iter().filter(|c| c.as_deref() == Some("same")).count(), 3);
    assert_eq!(stored.iter().filter(|c| c.is_none()).count(), 3, "ill-formed ids are stored as NULL: {stored:?}");
}

/// A request the router retried has one row per attempt: `(request_id,
/// attempt)` is the key, so a second attempt is never dropped as a duplicate;
/// a re-delivered attempt still is; an attempt marked `retried` adds its
/// tokens and cost but is not a request.
async fn each_attempt_is_a_row_and_retried_ones_are_not_requests(store: &Store) {
    let (acme, keys) = org_with_keys(store, "acme", 1).await;
    let mut rng = Rng::new(13);
    let id = request_id();
    let mut first = entry(&mut rng, acme, keys[0], id.clone());
    first.outcome = aigate_store::RETRIED.to_owned();
    first.currency = "USD".into();
    let mut second = entry(&mut rng, acme, keys[0], id.clone());
    second.attempt = 2;
    second.outcome = "completed".into();
    second.currency = "USD".into();
    let outcome = store.insert_usage(&[first.clone(), second.clone()]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (2, 0), "two attempts, two rows");
    let again = store.insert_usage(&[second.clone()]).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 1), "a re-delivered attempt counts once");
    let totals = &store.usage_summary(acme, day(0), day(3)).await.unwrap().totals[0];
    assert_eq!(totals.requests, 1, "one request");
    let audited = store.ledger_totals(acme, DAY0, DAY0 + Duration::days(3)).await.unwrap();
    assert_eq!(&audited[0], totals, "the ledger audit counts requests as the rollups do");
    assert_eq!(totals.prompt_tokens, first.usage.prompt + second.usage.prompt, "both attempts' tokens");
    assert_eq!(totals.billed_cost, first.billed_cost.checked_add(second.billed_cost).unwrap());
    let mut zero = second.clone();
    zero.attempt = 0;
    assert!(matches!(store.insert_usage(&[zero]).await.unwrap_err(), StoreError::Invalid { .. }));
}

/// The rollups narrowed to one key, one model or both equal the sums of
/// exactly those rows; a key of another org, or a model nobody called,
/// finds nothing.
async fn usage_series_narrows_to_a_key_and_a_model(store: &Store) {
    let (acme, beta, kept) = write_random_usage(store, 0xF17E).await;
    let acme_keys: Vec<KeyId> = store.list_keys(acme).await.unwrap().into_iter().map(|k| k.id).collect();
    let beta_key = store.list_keys(beta).await.unwrap()[0].id;
    let series = async |key: Option<KeyId>, model: Option<&str>| {
        let filter = UsageFilter { key, model: model.map(str::to_owned) };
        store.usage_series(acme, day(0), day(3), &filter).await.unwrap()
    };
    for key in [None, Some(acme_keys[0]), Some(acme_keys[1])] {
        for model in [None, Some("qwen-plus"), Some("gpt-x")] {
            let mine = kept.iter().filter(|e| {
                e.org_id == acme && key.is_none_or(|k| e.key_id == k) && model.is_none_or(|m| e.model == m)
            });
            let got = series(key, model).await;
            assert_eq!(got.totals, expected_totals(mine), "key {key:?}, model {model:?}");
            assert!(got.rows.iter().all(|r| model.is_none_or(|m| r.model == m)));
        }
    }
    assert_eq!(series(Some(beta_key), None).await.rows, [], "another org's key");
    assert_eq!(series(None, Some("qwen-PLUS")).await.rows, [], "exact names only");
    assert_eq!(series(None, Some("qwen\0plus")).await.rows, [], "no NUL reaches SQL");
    assert_eq!(series(None, None).await, store.usage_summary(acme, day(0), day(3)).await.unwrap());
}

/// Every org's spend per currency over some days, in one call, equals the
/// sums of its rows.
async fn spend_by_org_sums_each_orgs_rollups_per_currency(store: &Store) {
    let (acme, beta, kept) = write_random_usage(store, 0x5BE4D).await;
    let _idle = org_with_keys(store, "idle", 1).await;
    for (from, to) in [(day(0), day(3)), (day(1), day(2)), (day(2), day(30))] {
        let mut expected = Vec::new();
        for org in [acme, beta] {
            let mut per_currency: BTreeMap<&str, Money> = BTreeMap::new();
            for e in kept.iter().filter(|e| e.org_id == org && e.day() >= from && e.day() < to) {
                let sum = per_currency.entry(&e.currency).or_insert(Money::ZERO);
                *sum = sum.checked_add(e.billed_cost).unwrap();
            }
            expected.extend(per_currency.into_iter().map(|(currency, billed_cost)| OrgSpend {
                org_id: org,
                currency: currency.to_owned(),
                billed_cost,
            }));
        }
        assert_eq!(store.spend_by_org(from, to).await.unwrap(), expected, "{from}..{to}");
    }
    assert_eq!(store.spend_by_org(day(5), day(6)).await.unwrap(), [], "no usage, no entry");
}

/// Requests of two orgs, a quarter of them answered on a second attempt
/// after a retried first one, written in uneven batches: every row
/// (attempts included) in the order the ledger got them (a batch is written
/// sorted by request id and attempt).
async fn write_requests(store: &Store) -> (OrgId, OrgId, Vec<LedgerEntry>) {
    let (acme, acme_keys) = org_with_keys(store, "acme", 2).await;
    let (beta, beta_keys) = org_with_keys(store, "beta", 1).await;
    let owners = [(acme, acme_keys[0]), (acme, acme_keys[1]), (beta, beta_keys[0])];
    let mut rng = Rng::new(0x2E0);
    let mut rows = Vec::new();
    for i in 0..150 {
        let &(org, key) = rng.pick(&owners);
        let mut last = entry(&mut rng, org, key, request_id());
        last.created_at = DAY0 + Duration::seconds(i * 10) + Duration::microseconds(i);
        if i % 4 == 0 {
            let mut first = last.clone();
            first.outcome = aigate_store::RETRIED.to_owned();
            first.status = 503;
            first.model = "gpt-x".into();
            first.created_at -= Duration::seconds(2);
            rows.push(first);
            last.attempt = 2;
        }
        rows.push(last);
    }
    // Two requests at the same instant, written one after the other: the later write is newer.
    for _ in 0..2 {
        let mut tie = entry(&mut rng, acme, acme_keys[0], request_id());
        tie.created_at = DAY0 + Duration::days(1);
        rows.push(tie);
    }
    let mut written = Vec::with_capacity(rows.len());
    let mut at = 0;
    while at < rows.len() {
        let end = (at + 1 + rng.below(12) as usize).min(rows.len());
        let mut batch = rows[at..end].to_vec();
        assert_eq!(store.insert_usage(&batch).await.unwrap().inserted, batch.len() as u64);
        batch.sort_by(|a, b| (&a.request_id, a.attempt).cmp(&(&b.request_id, b.attempt)));
        written.extend(batch);
        at = end;
    }
    (acme, beta, written)
}

/// Which requests a filter should keep, computed here, independently of SQL.
type Keep<'a> = Box<dyn Fn(&LedgerEntry) -> bool + 'a>;

/// The recent requests: one per request (its final attempt, with the number
/// of attempts), newest first, ties in insertion order, every filter on the
/// final attempt, at most `limit`.
async fn recent_requests_list_final_attempts_newest_first(store: &Store) {
    let (acme, beta, rows) = write_requests(store).await;
    let mut prefixes = std::collections::HashMap::new();
    for org in [acme, beta] {
        for k in store.list_keys(org).await.unwrap() {
            prefixes.insert(k.id, (k.org_name.clone(), k.prefix.clone()));
        }
    }
    // Insertion order is each row's position; the final attempt has the highest number.
    let mut finals: Vec<(usize, &LedgerEntry)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match finals.iter().position(|(_, f)| f.request_id == row.request_id) {
            Some(p) if finals[p].1.attempt < row.attempt => finals[p] = (i, row),
            Some(_) => {}
            None => finals.push((i, row)),
        }
    }
    finals.sort_by_key(|&(written, e)| std::cmp::Reverse((e.created_at, written)));
    let expected = |keep: &dyn Fn(&LedgerEntry) -> bool, limit: usize| -> Vec<String> {
        finals.iter().map(|(_, e)| e).filter(|e| keep(e)).take(limit).map(|e| e.request_id.clone()).collect()
    };
    let list = async |filter: RequestFilter| -> Vec<RequestRow> { store.recent_requests(&filter).await.unwrap() };
    let ids = |got: Vec<RequestRow>| -> Vec<String> { got.into_iter().map(|r| r.request_id).collect() };

    let all = list(RequestFilter { limit: 500, ..Default::default() }).await;
    assert_eq!(all.len(), 152, "one row per request");
    assert_eq!(ids(all.clone()), expected(&|_| true, 500));
    // Every field of a request answered on its second attempt.
    let (_, second) = finals.iter().find(|(_, e)| e.attempt == 2).unwrap();
    let row = all.iter().find(|r| r.request_id == second.request_id).unwrap();
    let (org_name, key_prefix) = prefixes[&second.key_id].clone();
    let u = second.usage;
    assert_eq!(
        row,
        &RequestRow {
            request_id: second.request_id.clone(),
            client_request_id: second.stored_client_request_id().map(str::to_owned),
            created_at: second.created_at,
            org_name,
            key_prefix,
            api: second.api.clone(),
            provider: second.provider.clone(),
            model: second.model.clone(),
            stream: second.stream,
            status: second.status,
            outcome: second.outcome.clone(),
            attempts: 2,
            latency_ms: second.latency_ms,
            ttft_ms: second.ttft_ms,
            usage: TokenUsage { prompt: u.prompt, completion: u.completion, cached: u.cached, reasoning: u.reasoning },
            billed_cost: second.billed_cost,
            currency: second.currency.clone(),
        }
    );
    assert!(all.iter().all(|r| r.outcome != aigate_store::RETRIED), "never an earlier attempt");

    assert_eq!(ids(list(RequestFilter { limit: 7, ..Default::default() }).await), expected(&|_| true, 7));
    assert_eq!(ids(list(RequestFilter { limit: 0, ..Default::default() }).await).len(), 1, "at least one");
    let acme_key = rows.iter().find(|e| e.org_id == acme).unwrap().key_id;
    let cases: Vec<(RequestFilter, Keep)> = vec![
        (RequestFilter { org: Some(acme), ..Default::default() }, Box::new(|e| e.org_id == acme)),
        (RequestFilter { org: Some(beta), limit: 500, ..Default::default() }, Box::new(|e| e.org_id == beta)),
        (RequestFilter { key: Some(acme_key), limit: 500, ..Default::default() }, Box::new(|e| e.key_id == acme_key)),
        (
            RequestFilter { model: Some("gpt-x".into()), limit: 500, ..Default::default() },
            Box::new(|e| e.model == "gpt-x"),
        ),
        (RequestFilter { status: Some(500..600), limit: 500, ..Default::default() }, Box::new(|e| e.status >= 500)),
        (RequestFilter { status: Some(429..430), limit: 500, ..Default::default() }, Box::new(|e| e.status == 429)),
        (
            RequestFilter {
                org: Some(acme),
                key: Some(acme_key),
                model: Some("qwen-plus".into()),
                status: Some(200..300),
                limit: 500,
            },
            Box::new(|e| e.key_id == acme_key && e.model == "qwen-plus" && e.status / 100 == 2),
        ),
        (RequestFilter { org: Some(beta), key: Some(acme_key), ..Default::default() }, Box::new(|_| false)),
        (RequestFilter { org: Some(OrgId(987_654)), ..Default::default() }, Box::new(|_| false)),
        (RequestFilter { model: Some("gpt\0x".into()), ..Default::default() }, Box::new(|_| false)),
    ];
    for (filter, keep) in cases {
        let limit = filter.limit as usize;
        let got = ids(list(filter.clone()).await);
        assert_eq!(got, expected(&*keep, limit), "{filter:?}");
        assert!(!got.is_empty() || expected(&*keep, 1).is_empty());
    }
    // A retried first attempt answered 503 does not make its request a 5xx one.
    let retried_only: Vec<&str> =
        finals.iter().filter(|(_, e)| e.attempt == 2 && e.status < 500).map(|(_, e)| e.request_id.as_str()).collect();
    let five = ids(list(RequestFilter { status: Some(500..600), limit: 500, ..Default::default() }).await);
    assert!(retried_only.iter().all(|id| !five.iter().any(|f| f == id)));
}

store_suite!(
    usage_series_narrows_to_a_key_and_a_model,
    spend_by_org_sums_each_orgs_rollups_per_currency,
    recent_requests_list_final_attempts_newest_first,
    each_attempt_is_a_row_and_retried_ones_are_not_requests,
    usage_ranges_are_half_open,
    client_request_ids_are_not_unique_and_never_refuse_a_row,
    rollups_equal_ledger_sums_exactly,
    spend_since_reads_the_rollups,
    prune_deletes_in_batches_and_keeps_rollups,
    a_refused_row_fails_the_whole_batch,
);
