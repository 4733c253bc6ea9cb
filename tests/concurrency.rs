//! Many requests on one player at once: the row lock serialises them, so
//! money is never spent twice and an action never applies twice.

mod common;

use std::collections::HashSet;

use common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::PgPool;

#[sqlx::test]
async fn fifty_simultaneous_bets_spend_the_balance_exactly_once(pool: PgPool) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "hot", "USD", 2_000).await;
    let answers = join_all((0..50).map(|_| {
        let server = &server;
        async move { server.process(&batch("hot", vec![bet(id(), 100)])).await }
    }))
    .await;
    let accepted = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    let refused =
        answers.iter().filter(|(status, body)| status.as_u16() == 422 && body["code"] == 100).count();
    assert_eq!((accepted, refused), (20, 30));
    assert_eq!(server.balance("hot", "USD").await, 0);
}

#[sqlx::test]
async fn twenty_simultaneous_replays_debit_once_and_share_one_tx_id(pool: PgPool) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "hot", "USD", 1_000).await;
    let action = batch("hot", vec![bet(id(), 100)]);
    let answers = join_all((0..20).map(|_| {
        let (server, action) = (&server, &action);
        async move { server.process(action).await }
    }))
    .await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    let tx_ids: HashSet<String> = answers.iter().map(|(_, body)| tx_id(body, 0)).collect();
    assert_eq!(tx_ids.len(), 1);
    assert!(answers.iter().all(|(_, body)| body["balance"] == 900));
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE kind = 'bet'")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(entries, 1);
}

#[sqlx::test]
async fn simultaneous_replays_of_a_refused_bet_all_answer_its_refusal_and_wins_between_them_apply(
    pool: PgPool,
) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "hot", "USD", 100).await;
    // Ten copies of one bet that never fits (the ten wins add 10, to 110),
    // interleaved with the wins: each copy answers as the first did, and a
    // win right after a refusal is still accepted.
    let too_much = batch("hot", vec![bet(id(), 150)]);
    let requests: Vec<_> = (0..20)
        .map(|i| if i % 2 == 0 { too_much.clone() } else { batch("hot", vec![win(id(), 1)]) })
        .collect();
    let answers = join_all(requests.iter().map(|request| server.process(request))).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert_error(*status, body, 422, 100);
        } else {
            assert_eq!(*status, StatusCode::OK, "the win of request {i}: {body}");
        }
    }
    assert_eq!(server.balance("hot", "USD").await, 110);
    // Refused is not spent: a bet that fits is accepted after all of them.
    let (status, body) = server.process(&batch("hot", vec![bet(id(), 110)])).await;
    assert_eq!((status, &body["balance"]), (StatusCode::OK, &serde_json::json!(0)), "{body}");
}
