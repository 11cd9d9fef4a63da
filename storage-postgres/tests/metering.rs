//! Leased metering with two instances on one PostgreSQL (docs/ARCHITECTURE.md, "Metering"):
//! exactly the limit at the edge, one budget and one usage report for both, and a graceful
//! shutdown that leaves nothing leased.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use keyward::{
    AuthError, Counter, Error, HashParams, IssueRequest, KeyManager, KeyStore, Period, Project,
    Quota, Requirements,
};

fn instance(store: keyward_postgres::PostgresStore) -> KeyManager {
    let store: Arc<dyn KeyStore> = Arc::new(store);
    KeyManager::builder_arc(store)
        .serve("prd".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_grant_exactly_fifty_of_sixty_four_and_share_one_report() {
    let Some(schema) = common::TestSchema::create("metering_two_instances").await else {
        return;
    };
    let (a, b) = (
        instance(schema.store().await),
        instance(schema.store().await),
    );
    for round in 0..5 {
        let project: Project = format!("metered-{round}").parse().unwrap();
        a.set_project_quota(
            &project,
            Some(Quota {
                limit: 50,
                period: Period::Month,
            }),
        )
        .await
        .unwrap();
        let key = a
            .issue(IssueRequest::new(project.clone(), "prd".parse().unwrap()))
            .await
            .unwrap();
        let text = key.key.expose_secret();
        let who_a = a.verify(text, &Requirements::none()).await.unwrap();
        let who_b = b.verify(text, &Requirements::none()).await.unwrap();
        let mut tasks = Vec::new();
        for (m, who) in [(&a, &who_a), (&b, &who_b)] {
            for _ in 0..32 {
                let (m, who) = (m.clone(), who.clone());
                tasks.push(tokio::spawn(async move { m.consume_events(&who, 1).await }));
            }
        }
        let mut granted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => granted += 1,
                Err(Error::Auth(AuthError::QuotaExceeded { limit: 50, .. })) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(granted, 50, "round {round}");
        a.flush_usage().await.unwrap();
        b.flush_usage().await.unwrap();
        for m in [&a, &b] {
            let used = m.project_usage(&project).await.unwrap().unwrap().used;
            assert_eq!(used, 50, "round {round}");
        }
    }
    // A graceful shutdown gives back every unit held: nothing stays leased.
    let project: Project = "metered-shutdown".parse().unwrap();
    let quota = Quota {
        limit: 1_000_000,
        period: Period::Month,
    };
    a.set_project_quota(&project, Some(quota)).await.unwrap();
    let key = a
        .issue(IssueRequest::new(project.clone(), "prd".parse().unwrap()))
        .await
        .unwrap();
    let who = a
        .verify(key.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    for _ in 0..300 {
        a.consume_events(&who, 1).await.unwrap();
    }
    a.shutdown().await.unwrap();
    let (start, _) = Period::Month.window(a.now());
    let bucket = Counter::ProjectEvents(&project).bucket(start);
    let counts = a.store().lease(&bucket, 0, 0, quota.limit).await.unwrap();
    assert_eq!((counts.used, counts.leased), (300, 0));
    assert_eq!(b.project_usage(&project).await.unwrap().unwrap().used, 300);
}
