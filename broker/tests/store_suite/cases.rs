//! The store behaviours both backends must have, each an `async fn(&Db)`; `main.rs` runs every
//! one against SQLite and PostgreSQL.

use std::sync::Arc;

use keylatch_broker::store::{
    LifecycleUpdate, ReleaseInputs, ResourceState, Session, SessionState, Store, StoreError,
    StoredResource, MIGRATIONS,
};
use keylatch_keystore::{SealAlgorithm, SealedResource};

use crate::Db;

pub fn session(id: &str, nonce: &str, expires: i64) -> Session {
    Session {
        id: id.to_owned(),
        nonce: nonce.to_owned(),
        tee: "snp".to_owned(),
        created: 1_000,
        expires,
        state: SessionState::Issued,
        token_jti: None,
        token: None,
    }
}

fn resource(path: &str, version: u64, enabled: bool, byte: u8) -> StoredResource {
    StoredResource {
        path: path.to_owned(),
        version,
        sealed: SealedResource {
            kek_id: format!("kek-{byte}"),
            algorithm: SealAlgorithm::Aes256Gcm,
            nonce: vec![byte; 12],
            ciphertext: vec![byte, 0, 0xff, byte],
        },
        enabled,
        created: 5_000 + i64::from(byte),
    }
}

pub async fn session_round_trips_every_field(db: &Db) {
    let store = db.open().await;
    let issued = session("s-1", "bm9uY2U=", 1_300);
    store.create_session(&issued).await.unwrap();
    assert_eq!(store.get_session("s-1").await.unwrap(), Some(issued));
    assert_eq!(store.get_session("s-2").await.unwrap(), None);

    let mut attested = session("s-3", "other", i64::MAX);
    attested.state = SessionState::Attested;
    attested.token_jti = Some("jti-3".to_owned());
    attested.token = Some("eyJ.token.sig".to_owned());
    store.create_session(&attested).await.unwrap();
    assert_eq!(store.get_session("s-3").await.unwrap(), Some(attested));

    let again = store.create_session(&session("s-1", "x", 1)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

pub async fn nonce_is_consumed_once_and_only_with_its_session_before_expiry(db: &Db) {
    let store = db.open().await;
    store.create_session(&session("s-1", "n-1", 1_300)).await.unwrap();
    assert!(!store.consume_session("s-1", "n-wrong", 1_100).await.unwrap());
    assert!(!store.consume_session("s-other", "n-1", 1_100).await.unwrap());
    assert!(!store.consume_session("s-1", "n-1", 1_300).await.unwrap(), "expired at 1300");
    assert_eq!(store.get_session("s-1").await.unwrap().unwrap().state, SessionState::Issued);

    assert!(store.consume_session("s-1", "n-1", 1_299).await.unwrap());
    assert!(!store.consume_session("s-1", "n-1", 1_100).await.unwrap(), "single use");
    assert_eq!(store.get_session("s-1").await.unwrap().unwrap().state, SessionState::Consumed);
}

/// Two store instances (two replicas' pools) on one database, eight tasks split between them
/// answering the same nonce at once, twenty times over: exactly one wins each time.
pub async fn racing_store_instances_consume_a_nonce_exactly_once(db: &Db) {
    let a = db.open().await;
    let b = db.open().await;
    for round in 0..20 {
        let id = format!("race-{round}");
        a.create_session(&session(&id, "n", 10_000)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..8 {
            let store: Arc<dyn Store> = if k % 2 == 0 { a.clone() } else { b.clone() };
            let (id, barrier) = (id.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                store.consume_session(&id, "n", 2_000).await.unwrap()
            });
        }
        let wins = tasks.join_all().await.into_iter().filter(|won| *won).count();
        assert_eq!(wins, 1, "round {round}");
        assert_eq!(b.get_session(&id).await.unwrap().unwrap().state, SessionState::Consumed);
    }
}

pub async fn token_is_recorded_only_after_consumption(db: &Db) {
    let store = db.open().await;
    store.create_session(&session("s-1", "n", 9_000)).await.unwrap();
    let early = store.attest_session("s-1", "jti", "tok").await;
    assert!(matches!(early, Err(StoreError::Conflict(_))), "{early:?}");

    assert!(store.consume_session("s-1", "n", 2_000).await.unwrap());
    store.attest_session("s-1", "jti-1", "tok-1").await.unwrap();
    let got = store.get_session("s-1").await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.token_jti.as_deref(), got.token.as_deref()),
        (SessionState::Attested, Some("jti-1"), Some("tok-1"))
    );
    let twice = store.attest_session("s-1", "jti-2", "tok-2").await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let missing = store.attest_session("nope", "j", "t").await;
    assert!(matches!(missing, Err(StoreError::Conflict(_))), "{missing:?}");
}

pub async fn purge_removes_only_expired_sessions(db: &Db) {
    let store = db.open().await;
    for (id, expires) in [("a", 100), ("b", 199), ("c", 200), ("d", 5_000)] {
        store.create_session(&session(id, "n", expires)).await.unwrap();
    }
    assert_eq!(store.purge_sessions(200).await.unwrap(), 2);
    assert_eq!(store.get_session("b").await.unwrap(), None);
    assert_eq!(store.get_session("c").await.unwrap().unwrap().expires, 200);
    assert_eq!(store.purge_sessions(200).await.unwrap(), 0);
}

pub async fn resource_versions_are_kept_and_the_newest_enabled_is_current(db: &Db) {
    let store = db.open().await;
    let path = "default/disk-key/vm-1";
    assert_eq!(store.next_resource_version(path).await.unwrap(), 1);
    assert_eq!(store.current_resource(path).await.unwrap(), None);

    let v1 = resource(path, 1, true, 1);
    store.put_resource(&v1).await.unwrap();
    assert_eq!(store.next_resource_version(path).await.unwrap(), 2);
    assert_eq!(store.current_resource(path).await.unwrap(), Some(v1.clone()));

    store.put_resource(&resource(path, 2, false, 2)).await.unwrap();
    assert_eq!(store.current_resource(path).await.unwrap(), Some(v1), "v2 is disabled");
    let v3 = resource(path, 3, true, 3);
    store.put_resource(&v3).await.unwrap();
    assert_eq!(store.current_resource(path).await.unwrap(), Some(v3));
    assert_eq!(store.next_resource_version(path).await.unwrap(), 4);
    assert_eq!(store.next_resource_version("default/disk-key/other").await.unwrap(), 1);
}

pub async fn duplicate_resource_version_is_a_conflict(db: &Db) {
    let a = db.open().await;
    let b = db.open().await;
    let path = "default/k/v";
    a.put_resource(&resource(path, 1, true, 1)).await.unwrap();
    let dup = b.put_resource(&resource(path, 1, true, 9)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(a.current_resource(path).await.unwrap(), Some(resource(path, 1, true, 1)));
}

pub async fn policy_versions_increase_and_the_newest_applies(db: &Db) {
    let store = db.open().await;
    let path = "default/disk-key/vm-1";
    assert_eq!(store.current_policy(path).await.unwrap(), None);
    assert_eq!(store.put_policy(path, "{\"v\":1}", "d1", 10).await.unwrap(), 1);
    assert_eq!(store.put_policy(path, "{\"v\":2}", "d2", 20).await.unwrap(), 2);
    assert_eq!(store.put_policy("default/other/x", "{}", "d0", 30).await.unwrap(), 1);
    let current = store.current_policy(path).await.unwrap().unwrap();
    assert_eq!(
        (current.path.as_str(), current.version, current.body.as_str(), current.digest.as_str()),
        (path, 2, "{\"v\":2}", "d2")
    );
    assert_eq!(current.created, 20);
}

/// The one-statement read of a release agrees with the three reads it replaces, through a
/// resource's whole life: nothing, a version without a policy, newer versions (one disabled)
/// and policies, a disabled resource, another path's rows.
pub async fn release_inputs_match_the_lifecycle_resource_and_policy_reads(db: &Db) {
    let store = db.open().await;
    let path = "default/disk-key/vm-1";
    let separately = |store: Arc<dyn Store>| async move {
        ReleaseInputs {
            state: store.resource_lifecycle(path).await.unwrap().map(|l| l.state),
            resource: store.current_resource(path).await.unwrap(),
            policy: store.current_policy(path).await.unwrap(),
        }
    };
    assert_eq!(store.release_inputs(path).await.unwrap(), ReleaseInputs::default());
    let update = LifecycleUpdate { rotate_by: None, cryptoperiod_days: None };
    assert!(store.add_resource_version(&resource(path, 1, true, 1), update).await.unwrap());
    store.put_resource(&resource("default/other/x", 1, true, 1)).await.unwrap();
    store.put_policy("default/other/x", "{}", "d0", 5).await.unwrap();
    let inputs = store.release_inputs(path).await.unwrap();
    assert_eq!(inputs.state, Some(ResourceState::Active));
    assert_eq!(inputs.resource, Some(resource(path, 1, true, 1)));
    assert_eq!(inputs.policy, None);
    assert_eq!(inputs, separately(Arc::clone(&store)).await);

    store.put_policy(path, "{\"v\":1}", "d1", 10).await.unwrap();
    store.put_policy(path, "{\"v\":2}", "d2", 20).await.unwrap();
    assert!(store.add_resource_version(&resource(path, 2, true, 2), update).await.unwrap());
    store.put_resource(&resource(path, 3, false, 3)).await.unwrap();
    let inputs = store.release_inputs(path).await.unwrap();
    assert_eq!(inputs.resource.as_ref().map(|r| r.version), Some(2), "v3 is disabled");
    assert_eq!(inputs.policy.as_ref().map(|p| (p.version, p.digest.as_str())), Some((2, "d2")));
    assert_eq!(inputs, separately(Arc::clone(&store)).await);

    assert!(store.set_resource_state(path, ResourceState::Disabled, 30).await.unwrap());
    let inputs = store.release_inputs(path).await.unwrap();
    assert_eq!(inputs.state, Some(ResourceState::Disabled));
    assert_eq!(inputs, separately(store).await);
}

/// Four replicas starting at once on an empty database: all open, and the bookkeeping table
/// records each migration exactly once (the migration lock serializes them).
pub async fn concurrent_opens_of_a_fresh_database_apply_each_migration_once(db: &Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = db.config().clone();
        tasks.spawn(async move { keylatch_broker::store::open(&config).await.map(|_| ()) });
    }
    for result in tasks.join_all().await {
        result.unwrap();
    }
    let recorded = db.scalar("SELECT COUNT(*) FROM keylatch_migrations").await;
    assert_eq!(recorded, i64::try_from(MIGRATIONS.len()).unwrap());
    let newest = db.scalar("SELECT MAX(version) FROM keylatch_migrations").await;
    assert_eq!(newest, MIGRATIONS.last().unwrap().0);
}

pub async fn data_survives_reopening(db: &Db) {
    {
        let store = db.open().await;
        store.create_session(&session("s-1", "n", 9_000)).await.unwrap();
        store.put_policy("p/q/r", "{}", "d", 1).await.unwrap();
    }
    let store = db.open().await;
    assert_eq!(store.get_session("s-1").await.unwrap(), Some(session("s-1", "n", 9_000)));
    assert_eq!(store.current_policy("p/q/r").await.unwrap().unwrap().version, 1);
}

pub async fn health_succeeds(db: &Db) {
    db.open().await.health().await.unwrap();
}
