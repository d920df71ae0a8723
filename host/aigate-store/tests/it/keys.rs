//! API keys: create, find, list, revoke, expire; hostile lookups.

use aigate_core::{ApiKey, KeyHash, KeyId, ModelScope, OrgId};
use aigate_store::{KeyRepo, KeySettings, KeyStatus, NewKey, OrgRepo, Store, StoreError, UsageRepo, issue_key};
use time::{Duration, OffsetDateTime};

use crate::store_suite;
use crate::support::{DAY0, Rng, entry, org_name, org_with_keys, request_id};

async fn create_find_list_revoke(store: &Store) {
    let org = store.get_or_create_org(&org_name("acme")).await.unwrap();
    let settings =
        KeySettings { name: "ci".into(), rpm_limit: Some(60), tpm_limit: Some(100_000), ..Default::default() };
    let issued = issue_key(store, org.id, &settings).await.unwrap();
    let plaintext = issued.key.plaintext().to_owned();
    assert!(ApiKey::is_well_formed(&plaintext));

    let found = store.find_key_by_hash(&KeyHash::of(&plaintext)).await.unwrap().unwrap();
    assert_eq!(found, issued.record);
    assert_eq!(found.org_id, org.id);
    assert_eq!(found.org_name, "acme");
    assert_eq!(found.name, "ci");
    assert_eq!(found.prefix, &plaintext[..12]);
    assert_eq!((found.rpm_limit, found.tpm_limit), (Some(60), Some(100_000)));
    assert_eq!(found.status(OffsetDateTime::now_utc()), KeyStatus::Active);

    assert_eq!(store.key_by_prefix(&found.prefix).await.unwrap(), Some(found.clone()));
    let second = issue_key(store, org.id, &KeySettings::default()).await.unwrap();
    let listed = store.list_keys(org.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.record.id, "newest first");
    assert!(store.list_keys(OrgId(999_999)).await.unwrap().is_empty());

    let at = OffsetDateTime::now_utc();
    assert!(store.revoke_key(&found.prefix, at).await.unwrap());
    assert!(!store.revoke_key(&found.prefix, at + Duration::hours(1)).await.unwrap(), "already revoked");
    let revoked = store.find_key_by_hash(&KeyHash::of(&plaintext)).await.unwrap().unwrap();
    let revoked_at = revoked.revoked_at.unwrap();
    assert!((revoked_at - at).abs() < Duration::milliseconds(1), "first revocation time kept");
    assert!(matches!(revoked.status(OffsetDateTime::now_utc()), KeyStatus::Revoked { .. }));
    // The other key is untouched.
    let other = store.find_key_by_hash(second.key.hash()).await.unwrap().unwrap();
    assert_eq!(other.status(OffsetDateTime::now_utc()), KeyStatus::Active);
}

async fn expired_keys_are_returned_with_their_expiry(store: &Store) {
    let org = store.get_or_create_org(&org_name("acme")).await.unwrap();
    let expires_at = OffsetDateTime::now_utc() - Duration::minutes(5);
    let issued =
        issue_key(store, org.id, &KeySettings { expires_at: Some(expires_at), ..Default::default() }).await.unwrap();
    let found = store.find_key_by_hash(issued.key.hash()).await.unwrap().unwrap();
    let stored = found.expires_at.unwrap();
    assert!((stored - expires_at).abs() < Duration::microseconds(1));
    assert_eq!(found.status(OffsetDateTime::now_utc()), KeyStatus::Expired { at: stored });
    assert_eq!(found.status(stored - Duration::seconds(1)), KeyStatus::Active);
}

async fn unknown_and_sql_looking_keys_find_nothing(store: &Store) {
    let org = store.get_or_create_org(&org_name("acme")).await.unwrap();
    let issued = issue_key(store, org.id, &KeySettings::default()).await.unwrap();
    for presented in ["' OR 1=1 --", "sk-aig-' OR '1'='1", "\"; DROP TABLE api_keys; --", "%", "*", "", "\0"] {
        assert_eq!(store.find_key_by_hash(&KeyHash::of(presented)).await.unwrap(), None, "{presented:?}");
        // The prefix goes to SQL as is: no pattern matching, no injection.
        assert!(!store.revoke_key(presented, OffsetDateTime::now_utc()).await.unwrap(), "{presented:?}");
        assert_eq!(store.key_by_prefix(presented).await.unwrap(), None, "{presented:?}");
    }
    let still = store.find_key_by_hash(issued.key.hash()).await.unwrap().unwrap();
    assert_eq!(still.revoked_at, None);
    assert_eq!(store.list_keys(org.id).await.unwrap().len(), 1);
}

async fn duplicate_prefix_is_a_conflict_and_bad_limits_are_refused(store: &Store) {
    let org = store.get_or_create_org(&org_name("acme")).await.unwrap();
    let issued = issue_key(store, org.id, &KeySettings::default()).await.unwrap();
    let again = ApiKey::generate().unwrap();
    let clash = NewKey {
        org_id: org.id,
        name: "clash".into(),
        prefix: issued.record.prefix.clone(),
        hash: again.hash().clone(),
        expires_at: None,
        rpm_limit: None,
        tpm_limit: None,
        allowed_models: None,
    };
    let err = store.insert_key(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");

    let zero = NewKey { prefix: again.prefix().to_owned(), rpm_limit: Some(0), ..clash.clone() };
    assert!(matches!(store.insert_key(&zero).await.unwrap_err(), StoreError::Invalid { .. }));
    let unknown_org = NewKey { org_id: OrgId(777_777), prefix: again.prefix().to_owned(), ..clash };
    let err = store.insert_key(&unknown_org).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}

/// A key's model scope and its org's are stored and come back with the key (one lookup).
async fn model_scopes_of_keys_and_orgs(store: &Store) {
    let org = store.get_or_create_org(&org_name("acme")).await.unwrap();
    let scope = ModelScope::parse("qwen:*,smart").unwrap();
    let settings = KeySettings { allowed_models: scope.clone(), ..Default::default() };
    let issued = issue_key(store, org.id, &settings).await.unwrap();
    let hash = KeyHash::of(issued.key.plaintext());
    let found = store.find_key_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.allowed_models, scope);
    assert_eq!(found.org_allowed_models, None, "the org allows every model");
    let org_scope = ModelScope::parse("qwen:qwen-turbo").unwrap();
    store.set_allowed_models(org.id, org_scope.as_ref()).await.unwrap();
    let found = store.find_key_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.org_allowed_models, org_scope);
    assert_eq!(store.org_by_id(org.id).await.unwrap().unwrap().allowed_models, org_scope);
    store.set_allowed_models(org.id, None).await.unwrap();
    assert_eq!(store.org_by_id(org.id).await.unwrap().unwrap().allowed_models, None);
    let err = store.set_allowed_models(OrgId(777_777), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// `last_used_at` is the latest `created_at` of the key's ledger rows, set
/// with them: it only moves forward, and re-delivered rows (skipped as
/// duplicates) leave it alone.
async fn last_used_at_follows_the_latest_new_row(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 3).await;
    let last_used = async |key: KeyId| {
        let listed = store.list_keys(org).await.unwrap();
        listed.into_iter().find(|k| k.id == key).unwrap().last_used_at
    };
    assert_eq!(last_used(keys[0]).await, None, "never used");
    let mut rng = Rng::new(31);
    let at = |minutes: i64| DAY0 + Duration::minutes(minutes) + Duration::microseconds(7);
    let row = |rng: &mut Rng, key: KeyId, minutes: i64| {
        let mut e = entry(rng, org, key, request_id());
        e.created_at = at(minutes);
        e
    };

    // The latest of the batch, per key, whatever the order in the batch.
    let late = row(&mut rng, keys[0], 30);
    let batch = [row(&mut rng, keys[0], 10), late.clone(), row(&mut rng, keys[0], 20), row(&mut rng, keys[1], 5)];
    assert_eq!(store.insert_usage(&batch).await.unwrap().inserted, 4);
    assert_eq!(last_used(keys[0]).await, Some(at(30)));
    assert_eq!(last_used(keys[1]).await, Some(at(5)));
    assert_eq!(last_used(keys[2]).await, None, "a key without rows is untouched");

    // An older row arriving late does not move it back.
    store.insert_usage(&[row(&mut rng, keys[0], 1)]).await.unwrap();
    assert_eq!(last_used(keys[0]).await, Some(at(30)));

    // A duplicate with a later time is skipped, and so is its time.
    let mut again = late.clone();
    again.created_at = at(90);
    let outcome = store.insert_usage(&[again]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 1));
    assert_eq!(last_used(keys[0]).await, Some(at(30)));

    // A later new row moves it forward.
    store.insert_usage(&[row(&mut rng, keys[0], 45), row(&mut rng, keys[1], 6)]).await.unwrap();
    assert_eq!(last_used(keys[0]).await, Some(at(45)));
    assert_eq!(last_used(keys[1]).await, Some(at(6)));
}

store_suite!(
    last_used_at_follows_the_latest_new_row,
    model_scopes_of_keys_and_orgs,
    create_find_list_revoke,
    expired_keys_are_returned_with_their_expiry,
    unknown_and_sql_looking_keys_find_nothing,
    duplicate_prefix_is_a_conflict_and_bad_limits_are_refused,
);
