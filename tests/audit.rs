//! The audit trail: one entry per back-office change, in the change's own
//! transaction; a hash chain that verifies and names the first entry altered
//! behind the triggers' back; a database that refuses to change or remove
//! entries, superuser or not; filtered pages; and writers in parallel that
//! leave a chain without gaps.

mod common;

use chrono::DateTime;
use common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::audit::chain::{self, Content, GENESIS};
use wallet::audit::{self, Action, Actor, Origin};
use wallet::domain::DEFAULT_OPERATOR;
use wallet::ops::reconcile::reconcile;

/// The whole trail, oldest first, through `GET /v1/audit`.
async fn trail(server: &TestServer) -> Vec<Value> {
    let (status, page) = server.admin_get("/v1/audit?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    audit_entries(&page)
}

async fn verify(server: &TestServer) -> Value {
    let (status, verdict) = server.admin_get("/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    verdict
}

/// Runs `sql` as the test's superuser with the audit triggers disabled, as
/// someone with the table owner's rights could; answers the trail as it was,
/// for [`repair`].
async fn tamper(pool: &PgPool, sql: &str) -> Value {
    let saved: Value =
        sqlx::query_scalar("SELECT json_agg(a ORDER BY seq) FROM audit_log a").fetch_one(pool).await.unwrap();
    with_triggers_disabled(pool, sql, None).await;
    saved
}

/// Puts back the trail [`tamper`] saved: the suite reconciles the databases
/// tests leave behind, and a damaged one would fail it.
async fn repair(pool: &PgPool, saved: Value) {
    let restore = "INSERT INTO audit_log SELECT * FROM jsonb_populate_recordset(NULL::audit_log, $1)";
    with_triggers_disabled(pool, "DELETE FROM audit_log", Some((restore, saved))).await;
}

async fn with_triggers_disabled(pool: &PgPool, sql: &str, then: Option<(&str, Value)>) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    if let Some((restore, rows)) = then {
        sqlx::query(restore).bind(rows).execute(&mut *tx).await.unwrap();
    }
    // `ENABLE TRIGGER USER` would bring them back as ordinary triggers,
    // which `session_replication_role = replica` silences.
    for trigger in ["audit_log_no_update_or_delete", "audit_log_no_truncate"] {
        let sql = format!("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER {trigger}");
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Three players, each created and funded over HTTP: six entries, sealed.
async fn three_funded_players(server: &TestServer) {
    for name in ["a", "b", "c"] {
        let (status, _) =
            server.admin_post("/v1/players", &json!({"user_id": name, "currency": "EUR"}), None).await;
        assert_eq!(status, StatusCode::CREATED);
        let path = format!("/v1/players/{name}/deposits");
        let (status, _) = server.admin_post(&path, &json!({"amount": 1000}), Some("open")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(verify(server).await["entries"], 6);
}

#[sqlx::test]
async fn each_back_office_change_writes_one_entry_and_a_repeat_or_refusal_writes_none(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let created = server
        .client
        .post(server.url("/v1/players"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", "req-create-1")
        .json(&json!({"user_id": "alice", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let (status, _) =
        server.admin_post("/v1/players", &json!({"user_id": "alice", "currency": "EUR"}), None).await;
    assert_eq!(status, StatusCode::OK, "the repeat finds the player");
    let (status, deposit) =
        server.admin_post("/v1/players/alice/deposits", &json!({"amount": 700}), Some("dep-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) =
        server.admin_post("/v1/players/alice/deposits", &json!({"amount": 700}), Some("dep-1")).await;
    assert_eq!(status, StatusCode::OK, "a replay");
    let (status, withdrawal) =
        server.admin_post("/v1/players/alice/withdrawals", &json!({"amount": 200}), Some("wd-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server.admin_patch("/v1/players/alice", &json!({"status": "blocked"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.admin_patch("/v1/players/alice", &json!({"status": "blocked"})).await;
    assert_eq!(status, StatusCode::OK, "the status it already has");

    let entries = trail(&server).await;
    let summary: Vec<(&str, &Value, &Value)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap(), &e["before"], &e["after"])).collect();
    assert_eq!(
        summary,
        [
            (
                "player.create",
                &Value::Null,
                &json!({"user_id": "alice", "currency": "EUR", "balance": 0, "status": "active"})
            ),
            (
                "player.deposit",
                &json!({"balance": 0}),
                &json!({"amount": 700, "tx_id": deposit["tx_id"], "balance": 700, "idempotency_key": "dep-1"})
            ),
            (
                "player.withdrawal",
                &json!({"balance": 700}),
                &json!({"amount": 200, "tx_id": withdrawal["tx_id"], "balance": 500, "idempotency_key": "wd-1"})
            ),
            ("player.status", &json!({"status": "active"}), &json!({"status": "blocked"})),
        ]
    );
    let first = &entries[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["operator"], "default");
    assert_eq!(first["actor"], json!({"type": "platform", "id": null}));
    assert_eq!(first["target"], "player:alice");
    assert_eq!(first["request_id"], "req-create-1");
    assert_eq!(entries[1]["request_id"].as_str().unwrap().len(), 36, "a generated request id");
    assert_eq!(first.as_object().unwrap().len(), 10, "{first}");

    // A refused withdrawal writes nothing, the trail included.
    let before = snapshot(&server.pool).await;
    let (status, answer) =
        server.admin_post("/v1/players/alice/withdrawals", &json!({"amount": 501}), Some("wd-2")).await;
    assert_error(status, &answer, 422, 100);
    assert_eq!(snapshot(&server.pool).await, before);
}

#[sqlx::test]
async fn the_answered_entries_recompute_to_their_hashes_and_the_head(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    // Values that JSONB stores differently from how they were written.
    let mut conn = pool.acquire().await.unwrap();
    let odd = Origin::without_request(Actor::Staff("s-1".into()))
        .entry(None, Action::StaffCreate, audit::target("staff", "s-1"))
        .after(json!({"z": [1e3, -0.0, 0.1], "a": "é\u{1F600}\"", "n": null, "m": u64::MAX}));
    audit::record(&mut conn, &odd).await.unwrap();
    drop(conn);

    let mut previous = GENESIS;
    let entries = trail(&server).await;
    assert_eq!(entries.len(), 7);
    for entry in &entries {
        let content = Content {
            seq: entry["seq"].as_i64().unwrap(),
            at: DateTime::parse_from_rfc3339(entry["at"].as_str().unwrap()).unwrap().to_utc(),
            operator: entry["operator"].as_str().map(|_| DEFAULT_OPERATOR),
            actor_type: entry["actor"]["type"].as_str().unwrap(),
            actor_id: entry["actor"]["id"].as_str(),
            action: entry["action"].as_str().unwrap(),
            target: entry["target"].as_str().unwrap(),
            before: Some(&entry["before"]).filter(|v| !v.is_null()),
            after: Some(&entry["after"]).filter(|v| !v.is_null()),
            request_id: entry["request_id"].as_str(),
        };
        assert_eq!(entry["at"].as_str().unwrap(), chain::render_time(content.at));
        previous = chain::link(&previous, &content);
        assert_eq!(entry["hash"], chain::hex(&previous), "{entry}");
    }
    assert_eq!(entries[6]["operator"], Value::Null, "a platform-wide entry");
    assert_eq!(verify(&server).await, json!({"ok": true, "entries": 7, "head": chain::hex(&previous)}));
}

#[sqlx::test]
async fn an_entry_altered_behind_the_triggers_is_the_first_bad_seq_and_fails_reconcile(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    assert_eq!(verify(&server).await["ok"], true);
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.checks.iter().any(|c| c.name == "audit_chain_verifies"));

    let saved = tamper(&pool, r#"UPDATE audit_log SET before = '{"balance": 1000000}' WHERE seq = 4"#).await;
    assert_eq!(verify(&server).await, json!({"ok": false, "first_bad_seq": 4}));
    let report = reconcile(&pool).await.unwrap();
    assert!(!report.ok);
    let check = report.checks.iter().find(|c| c.name == "audit_chain_verifies").unwrap();
    assert_eq!(check.mismatches, 1);
    assert!(check.examples[0].contains("audit entry 4 "), "{:?}", check.examples);
    let others_failing = report.checks.iter().filter(|c| c.mismatches > 0).count();
    assert_eq!(others_failing, 1, "only the chain disagrees: {report:?}");
    repair(&pool, saved).await;
    assert_eq!(verify(&server).await["ok"], true, "the entry as it was verifies again");
}

#[sqlx::test]
async fn removed_entries_are_named_by_the_first_missing_seq(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    let saved = tamper(&pool, "DELETE FROM audit_log WHERE seq = 6").await;
    assert_eq!(verify(&server).await, json!({"ok": false, "first_bad_seq": 6}), "the last one");
    tamper(&pool, "DELETE FROM audit_log WHERE seq = 3").await;
    assert_eq!(verify(&server).await, json!({"ok": false, "first_bad_seq": 3}), "one in the middle");
    repair(&pool, saved).await;
    assert_eq!(verify(&server).await["entries"], 6, "the entries put back verify again");
}

#[sqlx::test]
async fn update_delete_and_truncate_are_refused_to_a_superuser(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    let (status, _) =
        server.admin_post("/v1/players/a/deposits", &json!({"amount": 5}), Some("pending")).await;
    assert_eq!(status, StatusCode::CREATED, "an entry waiting to be sealed");
    let before = snapshot(&pool).await;
    let is_superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(is_superuser, "the test connects as a superuser");
    for replica in [false, true] {
        for sql in [
            "UPDATE audit_log SET target = 'player:x' WHERE seq = 2",
            "DELETE FROM audit_log WHERE seq = 6",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "DELETE FROM audit_head",
            "TRUNCATE audit_head",
            "UPDATE audit_head SET seq = seq + 2",
            "UPDATE audit_head SET hash = sha256('x')",
            "UPDATE audit_pending SET target = 'player:x'",
            "TRUNCATE audit_pending",
        ] {
            let mut conn = pool.acquire().await.unwrap();
            // `replica` silences ordinary triggers; these fire always.
            let role = if replica { "replica" } else { "origin" };
            sqlx::query(&format!("SET session_replication_role = {role}")).execute(&mut *conn).await.unwrap();
            let error = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
            let message = error.as_database_error().map(|e| e.message().to_string()).unwrap_or_default();
            assert!(
                message.contains("append-only") || message.contains("only moves forward"),
                "{sql} ({role}): {error}"
            );
            sqlx::query("RESET session_replication_role").execute(&mut *conn).await.unwrap();
        }
    }
    assert_eq!(snapshot(&pool).await, before);
    assert_eq!(verify(&server).await["entries"], 7);
}

#[sqlx::test]
async fn filters_narrow_the_trail_and_cursors_walk_it_newest_first(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    let all = trail(&server).await;
    let seqs = |entries: &[Value]| entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>();

    let mut pages = Vec::new();
    let mut path = "/v1/audit?limit=4".to_string();
    loop {
        let (status, page) = server.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(seqs(page["data"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, [vec![6, 5, 4, 3], vec![2, 1]]);

    let (_, page) = server.admin_get("/v1/audit?target=player:b").await;
    assert_eq!(seqs(page["data"].as_array().unwrap()), [4, 3]);
    let (_, page) = server.admin_get("/v1/audit?action=player.deposit&limit=1").await;
    assert_eq!(seqs(page["data"].as_array().unwrap()), [6]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) =
        server.admin_get(&format!("/v1/audit?action=player.deposit&limit=1&cursor={cursor}")).await;
    assert_eq!(seqs(page["data"].as_array().unwrap()), [4]);

    // [from, to) over the entries' time: from is inclusive, to exclusive.
    let at = |seq: usize| all[seq - 1]["at"].as_str().unwrap().to_string();
    let window = format!("/v1/audit?from={}&to={}", at(2), at(5));
    let (status, page) = server.admin_get(&window).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let found = seqs(page["data"].as_array().unwrap());
    assert!(
        found.contains(&2) && !found.contains(&5) && found.iter().all(|s| (2..5).contains(s)),
        "{found:?}"
    );
    let (_, page) = server.admin_get("/v1/audit?target=player:nobody").await;
    assert_eq!(page, json!({"data": [], "next_cursor": null}));
}

#[sqlx::test]
async fn bad_filters_are_400_naming_the_filter_and_change_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    three_funded_players(&server).await;
    let before = snapshot(&pool).await;
    for (query, field) in [
        ("action=player.explode", "action"),
        ("from=yesterday", "from"),
        ("to=2026-11-27", "to"),
        ("from=2026-11-27T10:00:00Z&to=2026-11-27T10:00:00Z", "to"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("target=", "target"),
        ("target=a%00b", "target"),
    ] {
        let (status, answer) = server.admin_get(&format!("/v1/audit?{query}")).await;
        assert_error(status, &answer, 400, 400);
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{query}: {answer}");
    }
    let response = server.client.get(server.url("/v1/audit")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server.client.get(server.url("/v1/audit/verify")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test]
async fn deposits_in_parallel_on_many_players_leave_a_chain_without_gaps(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    const PLAYERS: usize = 16;
    const DEPOSITS: usize = 12;
    for p in 0..PLAYERS {
        player_with_balance(&pool, &format!("p{p}"), "USD", 0).await;
    }
    let requests = (0..PLAYERS * DEPOSITS).map(|i| {
        let server = &server;
        async move {
            let path = format!("/v1/players/p{}/deposits", i % PLAYERS);
            server.admin_post(&path, &json!({"amount": 1 + i}), Some(&format!("k{i}"))).await.0
        }
    });
    let statuses = join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");

    let total = PLAYERS * (DEPOSITS + 1);
    assert_eq!(verify(&server).await["entries"], total);
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq").fetch_all(&pool).await.unwrap();
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>());
    let deposits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'player.deposit'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deposits, (PLAYERS * DEPOSITS) as i64);
}

#[sqlx::test]
async fn an_entry_waits_with_its_change_until_sealed_in_order(pool: PgPool) {
    let entry = |n: i64| {
        Origin::without_request(Actor::System).entry(
            Some(DEFAULT_OPERATOR),
            Action::PlayerStatus,
            audit::target("player", n),
        )
    };
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let mut rolled_back = pool.begin().await.unwrap();
    audit::record(&mut rolled_back, &entry(0)).await.unwrap();
    rolled_back.rollback().await.unwrap();
    assert_eq!(count("audit_pending").await, 0, "a change that rolled back leaves no entry");

    // Taken in the order 1, 2, 3; committed as 1, 3, then 2 after a seal.
    let (mut first, mut second, mut third) =
        (pool.begin().await.unwrap(), pool.begin().await.unwrap(), pool.begin().await.unwrap());
    for (tx, n) in [(&mut first, 1), (&mut second, 2), (&mut third, 3)] {
        audit::record(tx, &entry(n)).await.unwrap();
    }
    first.commit().await.unwrap();
    third.commit().await.unwrap();
    assert_eq!((count("audit_pending").await, count("audit_log").await), (2, 0));
    assert_eq!(audit::store::seal(&pool, 100).await.unwrap(), 2);
    second.commit().await.unwrap();
    assert_eq!(audit::store::seal(&pool, 100).await.unwrap(), 1);
    assert_eq!(audit::store::seal(&pool, 100).await.unwrap(), 0);

    let chained: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, target FROM audit_log ORDER BY seq").fetch_all(&pool).await.unwrap();
    let expected = [(1, "player:1"), (2, "player:3"), (3, "player:2")].map(|(s, t)| (s, t.to_string()));
    assert_eq!(chained, expected, "numbered in the order they were sealed");
    assert_eq!(count("audit_pending").await, 0);
    let mut conn = pool.acquire().await.unwrap();
    let verdict = audit::store::verify(&mut conn).await.unwrap();
    assert!(matches!(verdict, audit::store::Verdict::Intact { entries: 3, .. }), "{verdict:?}");
}

#[sqlx::test]
#[should_panic(expected = "must not carry secrets")]
async fn an_entry_carrying_a_token_is_refused_in_debug_builds(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let leaky = Origin::without_request(Actor::Platform)
        .entry(Some(DEFAULT_OPERATOR), Action::StaffCreate, audit::target("staff", "s-2"))
        .after(json!({"email": "x@example.com", "token": "t0ps3cret"}));
    let _ = audit::record(&mut conn, &leaky).await;
}
