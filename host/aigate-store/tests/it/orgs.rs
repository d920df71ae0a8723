//! Organisations.

use aigate_core::{Money, OrgId, OrgName, OrgNameError};
use aigate_store::{Budget, OrgRepo, Store, StoreError};

use crate::store_suite;
use crate::support::{money, org_name};

async fn create_get_and_list(store: &Store) {
    let acme = store.create_org(&org_name("acme")).await.unwrap();
    assert_eq!(acme.name.as_str(), "acme");
    assert_eq!(acme.markup_bps, 0);
    assert_eq!(acme.monthly_budget, None);

    let err = store.create_org(&org_name("acme")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");

    let same = store.get_or_create_org(&org_name("acme")).await.unwrap();
    assert_eq!(same, acme);
    let beta = store.get_or_create_org(&org_name("beta")).await.unwrap();
    assert_ne!(beta.id, acme.id);

    assert_eq!(store.org_by_name(&org_name("acme")).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.org_by_id(beta.id).await.unwrap(), Some(beta.clone()));
    assert_eq!(store.org_by_name(&org_name("nobody")).await.unwrap(), None);
    assert_eq!(store.org_by_id(OrgId(987_654)).await.unwrap(), None);

    let names: Vec<String> = store.list_orgs().await.unwrap().into_iter().map(|o| o.name.to_string()).collect();
    assert_eq!(names, ["acme", "beta"]);
}

async fn markup_and_budget(store: &Store) {
    let org = store.create_org(&org_name("acme")).await.unwrap();
    store.set_markup(org.id, 1500).await.unwrap();
    let budget = |amount: Money, currency: &str| Budget { amount, currency: currency.into() };
    store.set_monthly_budget(org.id, Some(&budget(money("250.5"), "EUR"))).await.unwrap();
    let got = store.org_by_id(org.id).await.unwrap().unwrap();
    assert_eq!(got.markup_bps, 1500);
    assert_eq!(got.monthly_budget, Some(money("250.5")));
    assert_eq!(got.monthly_budget_currency.as_deref(), Some("EUR"));

    store.set_monthly_budget(org.id, None).await.unwrap();
    let got = store.org_by_id(org.id).await.unwrap().unwrap();
    assert_eq!((got.monthly_budget, got.monthly_budget_currency), (None, None));

    let err = store.set_monthly_budget(org.id, Some(&budget(Money::from_nanos(-1), "USD"))).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let err = store.set_monthly_budget(org.id, Some(&budget(money("1"), "dollars"))).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let err = store.set_markup(org.id, u32::MAX).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let err = store.set_markup(OrgId(424_242), 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.set_monthly_budget(OrgId(424_242), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

async fn odd_names_are_refused_and_sql_looking_names_stored_literally(store: &Store) {
    // Refused before they reach the store, with a validation error.
    for bad in ["Robert'); DROP TABLE orgs;--", "", "a b", "naïve", "x/y", "quote\"d", &"n".repeat(65)] {
        let err = OrgName::parse(bad).unwrap_err();
        assert!(matches!(err, OrgNameError::Empty | OrgNameError::TooLong(_) | OrgNameError::InvalidChar { .. }));
    }
    // Valid names that look like SQL are plain data.
    for name in ["DROP.TABLE.orgs--", "1--", "orgs", "SELECT", "_.-"] {
        let org = store.create_org(&org_name(name)).await.unwrap();
        assert_eq!(org.name.as_str(), name);
        assert_eq!(store.org_by_name(&org_name(name)).await.unwrap().unwrap().id, org.id);
    }
    assert_eq!(store.list_orgs().await.unwrap().len(), 5);
}

async fn concurrent_get_or_create_makes_one_org(store: &Store) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.get_or_create_org(&org_name("racy")).await.unwrap().id }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.list_orgs().await.unwrap().len(), 1);
}

store_suite!(
    create_get_and_list,
    markup_and_budget,
    odd_names_are_refused_and_sql_looking_names_stored_literally,
    concurrent_get_or_create_makes_one_org,
);
