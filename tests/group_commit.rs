//! Group commit: several requests in one transaction, each with its own
//! all-or-nothing outcome, and a one-at-a-time fallback when the combined
//! write fails.

mod common;

use common::*;
use futures::future::join_all;
use sqlx::PgPool;
use uuid::Uuid;
use wallet::domain::Amount;
use wallet::error::AppError;
use wallet::ledger::group::GroupCommitter;
use wallet::ledger::process::{process_group, process_group_probing, Probe};
use wallet::ledger::{Action, Submission};

fn bet_of(id: Uuid, amount: i64) -> Action {
    Action::Bet { id, amount: Amount::try_from(amount).unwrap() }
}

fn win_of(id: Uuid, amount: i64) -> Action {
    Action::Win { id, amount: Amount::try_from(amount).unwrap() }
}

async fn balance(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar("SELECT balance FROM players WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn one_group_gives_each_request_its_own_outcome(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    player_with_balance(&pool, "bob", "USD", 100).await;
    let (first_bet, reused) = (Uuid::new_v4(), Uuid::new_v4());
    let requests = [
        ledger_batch("alice", vec![bet_of(first_bet, 600)]), // ok: 400 left
        ledger_batch("alice", vec![win_of(Uuid::new_v4(), 10), bet_of(Uuid::new_v4(), 600)]), // 100: all undone
        ledger_batch("bob", vec![bet_of(reused, 100)]),                                       // ok: bob 0
        ledger_batch("alice", vec![bet_of(first_bet, 600), win_of(Uuid::new_v4(), 50)]), // replay + win: 450
        ledger_batch("alice", vec![bet_of(first_bet, 601)]),                             // 409
        ledger_batch("ghost", vec![bet_of(Uuid::new_v4(), 1)]),                          // 101
        ledger_batch("bob", vec![bet_of(Uuid::new_v4(), 1)]),                            // 100
        ledger_batch("alice", vec![Action::Rollback { id: Uuid::new_v4(), original: first_bet }]), // +600: 1050
    ];
    let submissions: Vec<Submission> = requests.iter().cloned().map(submitted).collect();
    let refs: Vec<&Submission> = submissions.iter().collect();
    let outcomes = process_group(&pool, &refs).await.unwrap();
    let codes: Vec<Result<i64, u16>> =
        outcomes.iter().map(|o| o.as_ref().map(|r| r.balance).map_err(AppError::code)).collect();
    assert_eq!(codes, vec![Ok(400), Err(100), Ok(0), Ok(450), Err(409), Err(101), Err(100), Ok(1_050)]);
    let first_tx = outcomes[0].as_ref().unwrap().transactions[0].1;
    assert_eq!(
        outcomes[3].as_ref().unwrap().transactions[0].1,
        first_tx,
        "the replay answers the first tx_id"
    );
    assert_eq!(balance(&pool, "alice").await, 1_050);
    assert_eq!(balance(&pool, "bob").await, 0);
    // Only the accepted requests left rows: alice's deposit, bet, win, rollback; bob's deposit and bet.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 6);
}

#[sqlx::test]
async fn a_group_whose_write_fails_is_retried_one_request_at_a_time(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    player_with_balance(&pool, "bob", "USD", 1_000).await;
    let committer = GroupCommitter::start(pool.clone(), 1, 64);
    // Two players claim the same new action_id in one group: each looks valid
    // alone, but the combined insert violates the registry's primary key.
    let shared = Uuid::new_v4();
    let requests = vec![
        ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]),
        ledger_batch("alice", vec![bet_of(shared, 100)]),
        ledger_batch("bob", vec![bet_of(shared, 100)]),
        ledger_batch("bob", vec![bet_of(Uuid::new_v4(), 20)]),
    ];
    let outcomes = join_all(requests.into_iter().map(|r| committer.submit(submitted(r)))).await;
    let codes: Vec<Result<i64, u16>> =
        outcomes.iter().map(|o| o.as_ref().map(|r| r.balance).map_err(AppError::code)).collect();
    assert_eq!(codes, vec![Ok(990), Ok(890), Err(409), Ok(980)]);
    assert_eq!((balance(&pool, "alice").await, balance(&pool, "bob").await), (890, 980));
}

#[sqlx::test]
async fn concurrent_requests_for_one_player_coalesce_without_losing_a_cent(pool: PgPool) {
    player_with_balance(&pool, "hot", "USD", 5_000).await;
    let committer = GroupCommitter::start(pool.clone(), 2, 16);
    // 120 bets of 50 (only 100 fit) and, among them, 20 wins of 1 that are
    // accepted wherever they land, also right after a refusal in the same
    // group (the wins add 20, never enough for another bet). Each request is
    // sent twice.
    let unique: Vec<wallet::ledger::Batch> = (0..140)
        .map(|i| {
            let action = if i % 7 == 6 { win_of(Uuid::new_v4(), 1) } else { bet_of(Uuid::new_v4(), 50) };
            ledger_batch("hot", vec![action])
        })
        .collect();
    let requests = unique.iter().chain(unique.iter()).cloned();
    let outcomes = join_all(requests.map(|r| committer.submit(submitted(r)))).await;
    let (first, second) = outcomes.split_at(unique.len());
    let is_win = |i: usize| i % 7 == 6;
    let accepted_bets = first.iter().enumerate().filter(|(i, o)| !is_win(*i) && o.is_ok()).count();
    assert_eq!(accepted_bets, 100);
    assert!(first.iter().filter_map(|o| o.as_ref().err()).all(|e| e.code() == 100));
    for (i, (a, b)) in first.iter().zip(second).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a.transactions, b.transactions, "a repeat answers the same tx_id"),
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "a repeat is refused as its first was"),
            _ => panic!("request {i} was answered {a:?}, its repeat {b:?}"),
        }
        if is_win(i) {
            assert!(a.is_ok(), "a win is never refused, whatever came before it: {a:?}");
        }
    }
    assert_eq!(balance(&pool, "hot").await, 20);
    let groups: i64 = sqlx::query_scalar("SELECT count(DISTINCT created_at) FROM ledger WHERE kind = 'bet'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(groups < 100, "100 accepted bets were committed in {groups} transactions");
}

/// Returns once some transaction of this test's database waits for a lock.
async fn until_a_transaction_waits_for_a_lock(pool: &PgPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nothing waited for the lock");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Holds `user`'s row lock in a transaction of its own until it is dropped
/// or committed, and waits until a group commit loop is queued behind it.
async fn hold_the_loop_on(pool: &PgPool, committer: &GroupCommitter, user: &str) -> BlockedLoop {
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM players WHERE user_id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *lock)
        .await
        .unwrap();
    let (committer, user) = (committer.clone(), user.to_string());
    let blocked = tokio::spawn(async move {
        committer.submit(submitted(ledger_batch(&user, vec![bet_of(Uuid::new_v4(), 1)]))).await
    });
    until_a_transaction_waits_for_a_lock(pool).await;
    BlockedLoop { lock, blocked }
}

struct BlockedLoop {
    lock: sqlx::Transaction<'static, sqlx::Postgres>,
    blocked: tokio::task::JoinHandle<Result<wallet::ledger::rules::Receipt, AppError>>,
}

#[sqlx::test]
async fn a_refusal_and_the_next_request_in_one_real_group_get_their_own_answers(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    player_with_balance(&pool, "carol", "USD", 1_000).await;
    let committer = GroupCommitter::start(pool.clone(), 1, 64);
    // The one loop is busy with carol's request, waiting for her row lock, so
    // both of alice's requests are queued before it takes its next group:
    // they share one transaction.
    let held = hold_the_loop_on(&pool, &committer, "carol").await;
    let mut overdraw =
        Box::pin(committer.submit(submitted(ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 2_000)]))));
    let mut fits =
        Box::pin(committer.submit(submitted(ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]))));
    assert!(futures::poll!(&mut overdraw).is_pending(), "queued behind carol's request");
    assert!(futures::poll!(&mut fits).is_pending(), "queued behind carol's request");
    held.lock.commit().await.unwrap();
    assert_eq!(held.blocked.await.unwrap().unwrap().balance, 999);

    let answers: Vec<Result<i64, u16>> = [overdraw.await, fits.await]
        .iter()
        .map(|o| o.as_ref().map(|r| r.balance).map_err(AppError::code))
        .collect();
    assert_eq!(answers, vec![Err(100), Ok(990)]);
    assert_eq!(balance(&pool, "alice").await, 990);
    let bets: Vec<i64> =
        sqlx::query_scalar("SELECT l.amount FROM ledger l JOIN players p ON p.id = l.player_id WHERE p.user_id = 'alice' AND l.kind = 'bet'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(bets, vec![10], "only the accepted bet was written");
}

async fn first_tx_id(pool: &PgPool, action_id: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT tx_id FROM actions WHERE action_id = $1")
        .bind(action_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn ledger_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger").fetch_one(pool).await.unwrap()
}

#[sqlx::test]
async fn a_replay_taken_for_new_is_caught_by_the_registry_and_answers_its_first_tx_id(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    let (bet, win) = (Uuid::new_v4(), Uuid::new_v4());
    process_group(&pool, &[&submitted(ledger_batch("alice", vec![bet_of(bet, 100)]))]).await.unwrap();
    let first = first_tx_id(&pool, bet).await;

    let requests = [
        ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]),
        ledger_batch("alice", vec![bet_of(bet, 100), win_of(win, 5)]),
    ];
    let submissions: Vec<Submission> = requests.iter().cloned().map(submitted).collect();
    let refs: Vec<&Submission> = submissions.iter().collect();
    let mut conn = pool.acquire().await.unwrap();
    let group = process_group_probing(&mut conn, &refs, Probe::Originals).await.unwrap();
    assert!(group.met_stored_action, "the replayed bet's insert must have collided");
    let replay = group.outcomes[1].as_ref().unwrap();
    assert_eq!(replay.transactions[0], (bet, first), "the replay answers its first tx_id");
    assert_eq!(replay.balance, 895);
    assert_eq!(balance(&pool, "alice").await, 895);
    // The deposit, the first bet, the second request's bet and the new win: the
    // attempt that collided left nothing behind.
    assert_eq!(ledger_rows(&pool).await, 4);
}

#[sqlx::test]
async fn a_refusal_is_judged_again_with_every_id_read_because_it_may_be_a_replay(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 100).await;
    let bet = Uuid::new_v4();
    process_group(&pool, &[&submitted(ledger_batch("alice", vec![bet_of(bet, 100)]))]).await.unwrap();
    let first = first_tx_id(&pool, bet).await;

    // Taken as new, the replay would overdraw the empty balance (code 100);
    // it is a replay, and answers its first result.
    let requests = [
        ledger_batch("alice", vec![bet_of(bet, 100)]),
        ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 50)]),
    ];
    let submissions: Vec<Submission> = requests.iter().cloned().map(submitted).collect();
    let refs: Vec<&Submission> = submissions.iter().collect();
    let mut conn = pool.acquire().await.unwrap();
    let group = process_group_probing(&mut conn, &refs, Probe::Originals).await.unwrap();
    assert!(!group.met_stored_action, "the refusal was judged again before anything was written");
    assert_eq!(group.outcomes[0].as_ref().unwrap().transactions, vec![(bet, first)]);
    assert_eq!(group.outcomes[1].as_ref().map_err(AppError::code).unwrap_err(), 100);
    assert_eq!(balance(&pool, "alice").await, 0);
    assert_eq!(ledger_rows(&pool).await, 2);
}

#[sqlx::test]
async fn a_replayed_rollback_and_a_late_original_are_found_when_taken_for_new(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    let (bet, rollback, unseen, pre_rollback) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let history = [
        ledger_batch("alice", vec![bet_of(bet, 100)]),
        ledger_batch("alice", vec![Action::Rollback { id: rollback, original: bet }]),
        ledger_batch("alice", vec![Action::Rollback { id: pre_rollback, original: unseen }]),
    ];
    for r in &history {
        process_group(&pool, &[&submitted(r.clone())]).await.unwrap();
    }
    let first_rollback = first_tx_id(&pool, rollback).await;
    assert_eq!(balance(&pool, "alice").await, 1_000);

    // The rollback again, then the original of the pre-rollback: both ids are
    // stored (a processed rollback, a placeholder), neither moves money.
    let requests = [
        ledger_batch("alice", vec![Action::Rollback { id: rollback, original: bet }]),
        ledger_batch("alice", vec![bet_of(unseen, 300)]),
    ];
    let submissions: Vec<Submission> = requests.iter().cloned().map(submitted).collect();
    let refs: Vec<&Submission> = submissions.iter().collect();
    let mut conn = pool.acquire().await.unwrap();
    let group = process_group_probing(&mut conn, &refs, Probe::Originals).await.unwrap();
    assert!(group.met_stored_action);
    assert_eq!(group.outcomes[0].as_ref().unwrap().transactions, vec![(rollback, first_rollback)]);
    let late = group.outcomes[1].as_ref().unwrap();
    assert_eq!(late.balance, 1_000, "the late original is recorded as rolled back");
    assert_ne!(first_tx_id(&pool, unseen).await, Uuid::nil());
    // deposit, bet, rollback, pre-rollback, late original
    assert_eq!(ledger_rows(&pool).await, 5);
}

#[sqlx::test]
async fn an_entry_is_never_dated_before_its_players_last_change(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    // As if the previous holder of the lock had written with a clock ahead of this one.
    let last_change: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE players SET updated_at = clock_timestamp() + interval '1 minute'
         WHERE user_id = 'alice' RETURNING updated_at",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    process_group(&pool, &[&submitted(ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]))])
        .await
        .unwrap();
    let dated: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(created_at) FROM ledger WHERE kind = 'bet'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dated, last_change);
}

#[sqlx::test]
async fn a_rollback_reads_its_original_first_and_needs_no_second_attempt(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    let bet = Uuid::new_v4();
    process_group(&pool, &[&submitted(ledger_batch("alice", vec![bet_of(bet, 100)]))]).await.unwrap();

    let undo = submitted(ledger_batch("alice", vec![Action::Rollback { id: Uuid::new_v4(), original: bet }]));
    let mut conn = pool.acquire().await.unwrap();
    let group = process_group_probing(&mut conn, &[&undo], Probe::Originals).await.unwrap();
    assert!(!group.met_stored_action, "the original was read before the rules ran, not met on insert");
    assert_eq!(group.outcomes[0].as_ref().unwrap().balance, 1_000);
}

#[sqlx::test]
async fn a_loop_whose_queue_ran_empty_gives_its_connection_back(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    let committer = GroupCommitter::start(pool.clone(), 1, 64);
    committer.submit(submitted(ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]))).await.unwrap();
    // The loop answers first and gives the connection back right after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pool.size() as usize > pool.num_idle() {
        assert!(std::time::Instant::now() < deadline, "the loop kept its connection while idle");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[sqlx::test]
async fn a_group_aborted_by_a_deadlock_runs_again_instead_of_answering_503(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    player_with_balance(&pool, "bob", "USD", 1_000).await;
    // Another transaction holds bob, the group locks alice and waits for bob,
    // then the other asks for alice: a cycle. Only the group's side looks for
    // deadlocks within the server's second, so the group is the one aborted.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '60s'").execute(&mut *other).await.unwrap();
    sqlx::query("SELECT 1 FROM players WHERE user_id = 'bob' FOR UPDATE").execute(&mut *other).await.unwrap();
    let group_pool = pool.clone();
    let group = tokio::spawn(async move {
        let requests = [
            ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]),
            ledger_batch("bob", vec![bet_of(Uuid::new_v4(), 20)]),
        ];
        let submissions: Vec<Submission> = requests.into_iter().map(submitted).collect();
        let refs: Vec<&Submission> = submissions.iter().collect();
        process_group(&group_pool, &refs).await
    });
    until_a_transaction_waits_for_a_lock(&pool).await;
    sqlx::query("SELECT 1 FROM players WHERE user_id = 'alice' FOR UPDATE")
        .execute(&mut *other)
        .await
        .unwrap();
    other.commit().await.unwrap();

    let outcomes = group.await.unwrap().expect("the group ran again after the deadlock");
    let codes: Vec<Result<i64, u16>> =
        outcomes.iter().map(|o| o.as_ref().map(|r| r.balance).map_err(AppError::code)).collect();
    assert_eq!(codes, vec![Ok(990), Ok(980)]);
}

#[sqlx::test]
async fn a_write_the_database_refuses_answers_that_refusal_not_an_internal_error(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    // The edge refuses a NUL; were one to get through, PostgreSQL refuses the
    // text, and that is a 400 whatever the group tried first.
    let mut request = ledger_batch("alice", vec![bet_of(Uuid::new_v4(), 10)]);
    request.game = Some("slots\0".into());
    let before = snapshot(&pool).await;
    let error = process_group(&pool, &[&submitted(request)]).await.expect_err("the write fails");
    assert_eq!(error.code(), 400, "{error:?}");
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test]
async fn two_players_claiming_one_new_id_in_a_group_fail_it_as_a_conflict(pool: PgPool) {
    player_with_balance(&pool, "alice", "USD", 1_000).await;
    player_with_balance(&pool, "bob", "USD", 1_000).await;
    // Read first or not, the id is new to both: the registry's key refuses the
    // second claim, and the group fails as a conflict (the group-commit loop
    // then runs its requests one at a time).
    let shared = Uuid::new_v4();
    let requests =
        [ledger_batch("alice", vec![bet_of(shared, 10)]), ledger_batch("bob", vec![bet_of(shared, 10)])];
    let submissions: Vec<Submission> = requests.into_iter().map(submitted).collect();
    let refs: Vec<&Submission> = submissions.iter().collect();
    let before = snapshot(&pool).await;
    let error = process_group(&pool, &refs).await.expect_err("the write fails");
    assert_eq!(error.code(), 409, "{error:?}");
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test]
async fn a_group_spanning_operators_finds_each_player_at_its_own_operator(pool: PgPool) {
    use wallet::domain::DEFAULT_OPERATOR;
    sqlx::query(r#"INSERT INTO operators (id, code, config) VALUES (2, 'other', '{"name": "Other", "currencies": ["USD"]}')"#)
        .execute(&pool)
        .await
        .unwrap();
    // The same user id at both operators, and a second user id only at the
    // default one: the lock statement matches operators and user ids as two
    // lists, so it also locks ("default", "solo") for the other operator's
    // "solo", which is not a player of this group.
    player_with_balance(&pool, "twin", "USD", 1_000).await;
    player_with_balance(&pool, "solo", "USD", 500).await;
    for user in ["twin", "solo"] {
        sqlx::query("INSERT INTO players (operator_id, user_id, currency, balance) VALUES (2, $1, 'USD', 0)")
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
    }
    let submissions = [
        Submission::open(DEFAULT_OPERATOR, ledger_batch("twin", vec![bet_of(Uuid::new_v4(), 100)])),
        Submission::open(2, ledger_batch("twin", vec![win_of(Uuid::new_v4(), 7)])),
        Submission::open(2, ledger_batch("solo", vec![bet_of(Uuid::new_v4(), 1)])),
    ];
    let refs: Vec<&Submission> = submissions.iter().collect();
    let outcomes = process_group(&pool, &refs).await.unwrap();
    let codes: Vec<Result<i64, u16>> =
        outcomes.iter().map(|o| o.as_ref().map(|r| r.balance).map_err(AppError::code)).collect();
    assert_eq!(codes, vec![Ok(900), Ok(7), Err(100)], "each request against its own operator's player");
    let balances: Vec<(i16, String, i64)> =
        sqlx::query_as("SELECT operator_id, user_id, balance FROM players ORDER BY operator_id, user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = [(1, "solo", 500), (1, "twin", 900), (2, "solo", 0), (2, "twin", 7)];
    assert_eq!(
        balances.iter().map(|(o, u, b)| (*o, u.as_str(), *b)).collect::<Vec<_>>(),
        expected.iter().map(|(o, u, b)| (*o as i16, *u, *b)).collect::<Vec<_>>()
    );
}
