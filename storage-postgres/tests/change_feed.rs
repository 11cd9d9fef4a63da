//! The LISTEN/NOTIFY change feed across instances (separate pools): latency, reconnect with
//! resync after the listener's backend is killed, isolation between schemas, lagging
//! subscribers and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use keyward::RecordStore;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Proxy, TestSchema, listener_pids, next_event};
use keyward::conformance::sample_record;
use keyward::{ChangeEvent, KeyChange, KeyId, Project, Timestamp};
use keyward_postgres::PostgresStore;

fn rename(n: usize) -> KeyChange {
    KeyChange {
        name: Some(format!("name {n}")),
        ..KeyChange::default()
    }
}

async fn insert_key(store: &PostgresStore) -> KeyId {
    let r = sample_record(
        &Project::new("feed").unwrap(),
        "dev".parse().unwrap(),
        Timestamp::from_unix_millis(1_800_000_000_000),
    );
    store.insert(&r, &[]).await.unwrap();
    r.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_pool_reaches_a_listener_on_another_within_100ms() {
    let Some(schema) = TestSchema::create("a_change_through_one_pool_reaches_a_listener").await
    else {
        return;
    };
    let writer = schema.store().await;
    let reader = schema.store().await;
    let id = insert_key(&writer).await;
    let mut feed = reader.listen().await.unwrap();

    let mut latencies = Vec::new();
    for n in 0..30 {
        let start = Instant::now();
        writer.update(&id, &rename(n), &[]).await.unwrap().unwrap();
        let ev = next_event(&mut feed, Duration::from_secs(5)).await;
        latencies.push(start.elapsed());
        assert_eq!(ev, ChangeEvent::Changed(id));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let (min, max) = (latencies[0], latencies[latencies.len() - 1]);
    println!(
        "notify latency over {} updates (update call to event, separate pools): min {min:?}, median {median:?}, max {max:?}",
        latencies.len()
    );
    assert!(median < Duration::from_millis(100), "median {median:?}");
    let within = latencies
        .iter()
        .filter(|l| **l < Duration::from_millis(100))
        .count();
    assert!(within * 10 >= latencies.len() * 9, "{latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_backend_is_killed_and_reports_resync() {
    let Some(schema) =
        TestSchema::create("the_listener_reconnects_after_its_backend_is_killed").await
    else {
        return;
    };
    let writer = schema.store().await;
    let reader = schema.store().await;
    let id = insert_key(&writer).await;
    let mut feed = reader.listen().await.unwrap();
    let mut admin = schema.admin().await;
    let app = reader.listener_application_name();

    writer.update(&id, &rename(0), &[]).await.unwrap();
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5)).await,
        ChangeEvent::Changed(id)
    );

    let killed = common::kill_listener(&mut admin, &app).await;
    let killed_at = Instant::now();
    // A change made while the listener is down is lost as a notification; Resync covers it.
    writer.update(&id, &rename(1), &[]).await.unwrap();

    let mut lost = false;
    loop {
        match next_event(&mut feed, Duration::from_secs(10)).await {
            ChangeEvent::Resync => break,
            // The change above may have slipped in before the backend died.
            ChangeEvent::Changed(got) => assert_eq!(got, id),
            // Announced as soon as the connection broke.
            ChangeEvent::Lost => lost = true,
            other => panic!("{other:?}"),
        }
    }
    println!("resync after {:?}", killed_at.elapsed());
    assert!(lost, "the loss is announced before the resync");
    let new_pids = listener_pids(&mut admin, &app).await;
    assert_eq!(new_pids.len(), 1);
    assert_ne!(new_pids[0], killed, "a new backend listens");

    let other = insert_key(&writer).await;
    writer.update(&other, &rename(2), &[]).await.unwrap();
    loop {
        match next_event(&mut feed, Duration::from_secs(5)).await {
            ChangeEvent::Changed(got) if got == other => break,
            // The change made during the outage, if LISTEN was back before it committed.
            ChangeEvent::Changed(got) => assert_eq!(got, id),
            other => panic!("a second {other:?} without a second outage"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_in_different_schemas_do_not_hear_each_other() {
    let Some(a) = TestSchema::create("stores_in_different_schemas_do_not_hear_each_other").await
    else {
        return;
    };
    let b = TestSchema::create("stores_in_different_schemas")
        .await
        .unwrap();
    let (sa, sb) = (a.store().await, b.store().await);
    assert_ne!(sa.channel(), sb.channel());
    assert!(sa.channel().contains(&a.name));
    let mut feed_b = sb.listen().await.unwrap();
    let in_a = insert_key(&sa).await;
    sa.update(&in_a, &rename(0), &[]).await.unwrap();
    let in_b = insert_key(&sb).await;
    sb.update(&in_b, &rename(0), &[]).await.unwrap();
    for change in ["insert", "update"] {
        assert_eq!(
            next_event(&mut feed_b, Duration::from_secs(5)).await,
            ChangeEvent::Changed(in_b),
            "the {change} in b"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed_b.recv())
            .await
            .is_err(),
        "schema b heard nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_the_feed_capacity_is_told_to_resync() {
    let Some(schema) = TestSchema::create("a_subscriber_that_falls_behind").await else {
        return;
    };
    let store = schema.store().await;
    let id = insert_key(&store).await;
    let mut feed = store.listen().await.unwrap();
    let total = keyward_postgres::FEED_CAPACITY + 50;
    for n in 0..total {
        store.update(&id, &rename(n), &[]).await.unwrap();
    }
    let mut changed = 0;
    while let ChangeEvent::Changed(got) = next_event(&mut feed, Duration::from_secs(10)).await {
        assert_eq!(got, id);
        changed += 1;
    }
    assert!(changed <= keyward_postgres::FEED_CAPACITY, "{changed}");
    // Still live afterwards.
    store.update(&id, &rename(0), &[]).await.unwrap();
    let deadline = Duration::from_secs(5);
    while next_event(&mut feed, deadline).await != ChangeEvent::Changed(id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_receiver_closes_the_listener_connection() {
    let Some(schema) = TestSchema::create("dropping_the_receiver_closes_the_listener").await else {
        return;
    };
    let store = schema.store().await;
    let app = store.listener_application_name();
    let mut admin = schema.admin().await;
    let feed = store.listen().await.unwrap();
    assert_eq!(listener_pids(&mut admin, &app).await.len(), 1);
    drop(feed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !listener_pids(&mut admin, &app).await.is_empty() {
        assert!(Instant::now() < deadline, "listener connection still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_backs_off_while_the_database_is_unreachable_then_resyncs() {
    let Some(schema) = TestSchema::create("the_listener_backs_off_while_unreachable").await else {
        return;
    };
    let proxy = Proxy::in_front_of(&schema).await;
    let writer = schema.store().await;
    let via_proxy = PostgresStore::connect_with(proxy.options(&schema))
        .await
        .unwrap();
    let id = insert_key(&writer).await;
    let mut feed = via_proxy.listen().await.unwrap();
    writer.update(&id, &rename(0), &[]).await.unwrap();
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5)).await,
        ChangeEvent::Changed(id)
    );

    proxy.set_enabled(false);
    writer.update(&id, &rename(1), &[]).await.unwrap(); // its notification is lost
    let down_for = Duration::from_millis(1500);
    // The loss is announced at once (only the change above can slip in before, if it beat
    // the cut), then nothing until the database is back.
    loop {
        match next_event(&mut feed, Duration::from_secs(5)).await {
            ChangeEvent::Lost => break,
            ChangeEvent::Changed(got) => assert_eq!(got, id),
            other => panic!("{other:?}"),
        }
    }
    let quiet = tokio::time::timeout(down_for, feed.recv()).await;
    assert!(quiet.is_err(), "{quiet:?} while unreachable");
    let attempts = proxy.refused.load(Ordering::SeqCst);
    println!("reconnect attempts while unreachable for {down_for:?}: {attempts}");
    assert!(
        (2..=12).contains(&attempts),
        "retries back off (100 ms doubling): {attempts} attempts"
    );

    proxy.set_enabled(true);
    let back = Instant::now();
    loop {
        match next_event(&mut feed, Duration::from_secs(10)).await {
            ChangeEvent::Resync => break,
            ChangeEvent::Changed(got) => assert_eq!(got, id),
            other => panic!("{other:?}"),
        }
    }
    println!("resync {:?} after the database came back", back.elapsed());
    let other = insert_key(&writer).await;
    writer.update(&other, &rename(2), &[]).await.unwrap();
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5)).await,
        ChangeEvent::Changed(other)
    );
}
