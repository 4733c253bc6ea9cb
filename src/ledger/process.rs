//! The hot path: one provider request, start to finish.
//!
//! ```text
//! BEGIN
//! SELECT … FROM players … FOR UPDATE          -- 1. lock the player
//! SELECT clock_timestamp(), … FROM actions     -- 2. every referenced action, after the lock
//!   … rules run in memory …
//! WITH … INSERT/UPDATE … UPDATE players        -- 3. one statement writes everything
//! COMMIT
//! ```
//!
//! Five round trips whatever the number of actions; nothing is queried
//! inside a loop. If the rules refuse the request, the transaction is dropped
//! (rolled back) before anything was written.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::rules::{ActionRecord, Player, Receipt, Wallet};
use super::Batch;
use crate::domain::{Currency, EntryKind, UserId};
use crate::error::{AppError, AppResult};

/// What a provider request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Balance(i64),
    Applied(Receipt),
}

/// A balance lookup: the request carried no actions.
pub async fn balance_of(
    pool: &PgPool,
    operator: i16,
    user_id: &UserId,
    currency: &Currency,
) -> AppResult<i64> {
    let player = sqlx::query!(
        "SELECT currency, balance FROM players WHERE operator_id = $1 AND user_id = $2",
        operator,
        user_id.as_str(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    if player.currency != currency.as_str() {
        return Err(AppError::CurrencyMismatch);
    }
    Ok(player.balance)
}

/// Applies one request's actions atomically under the player's row lock.
pub async fn process_batch(pool: &PgPool, operator: i16, batch: &Batch) -> AppResult<Receipt> {
    let mut tx = pool.begin().await?;
    let player = lock_player(&mut tx, operator, &batch.user_id)
        .await?
        .ok_or(AppError::PlayerNotFound)?;
    if batch.currency.as_str() != player.currency {
        return Err(AppError::CurrencyMismatch);
    }
    let (now, stored) = load_actions(&mut tx, &batch.referenced_ids()).await?;
    let mut wallet = Wallet::new(player, now, stored);
    let receipt = wallet.apply(batch)?;
    write_effects(&mut tx, &wallet).await?;
    tx.commit().await?;
    Ok(receipt)
}

/// `SELECT … FOR UPDATE` on the player: every writer of a balance takes this
/// lock first, so a player's requests are applied one after another.
pub async fn lock_player(
    conn: &mut PgConnection,
    operator: i16,
    user_id: &UserId,
) -> AppResult<Option<Player>> {
    let row = sqlx::query!(
        r#"SELECT id, currency, balance, status, last_seq
           FROM players WHERE operator_id = $1 AND user_id = $2
           FOR UPDATE"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(|p| {
        Ok(Player {
            id: p.id,
            currency: p.currency,
            balance: p.balance,
            status: p.status.parse().map_err(AppError::internal)?,
            last_seq: p.last_seq,
        })
    })
    .transpose()
}

/// Loads the stored actions among `ids`, and the processing time, read after
/// the lock so that it never runs behind the player's previous entry.
pub async fn load_actions(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> AppResult<(DateTime<Utc>, Vec<ActionRecord>)> {
    let rows = sqlx::query!(
        r#"SELECT clock_timestamp() AS "now!",
                  a.action_id AS "action_id?", a.player_id AS "player_id?",
                  a.kind AS "kind?: EntryKind", a.amount, a.original_action_id, a.tx_id,
                  a.processed_at, a.game, a.game_id, a.reversed_by
           FROM (SELECT) AS one
           LEFT JOIN actions a ON a.action_id = ANY($1)"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    let now = rows
        .first()
        .map(|r| r.now)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no clock row")))?;
    let stored = rows
        .into_iter()
        .filter_map(|r| {
            Some(ActionRecord {
                action_id: r.action_id?,
                player_id: r.player_id?,
                kind: r.kind,
                amount: r.amount,
                original_action_id: r.original_action_id,
                tx_id: r.tx_id,
                processed_at: r.processed_at,
                game: r.game,
                game_id: r.game_id,
                reversed_by: r.reversed_by,
            })
        })
        .collect();
    Ok((now, stored))
}

/// Action rows as parallel arrays, for `UNNEST`.
#[derive(Default)]
struct ActionColumns {
    action_id: Vec<Uuid>,
    kind: Vec<Option<&'static str>>,
    amount: Vec<Option<i64>>,
    original_action_id: Vec<Option<Uuid>>,
    tx_id: Vec<Option<Uuid>>,
    processed_at: Vec<Option<DateTime<Utc>>>,
    game: Vec<Option<String>>,
    game_id: Vec<Option<String>>,
    reversed_by: Vec<Option<Uuid>>,
}

impl<'a> FromIterator<&'a ActionRecord> for ActionColumns {
    fn from_iter<I: IntoIterator<Item = &'a ActionRecord>>(records: I) -> Self {
        let mut c = ActionColumns::default();
        for r in records {
            c.action_id.push(r.action_id);
            c.kind.push(r.kind.map(EntryKind::as_str));
            c.amount.push(r.amount);
            c.original_action_id.push(r.original_action_id);
            c.tx_id.push(r.tx_id);
            c.processed_at.push(r.processed_at);
            c.game.push(r.game.clone());
            c.game_id.push(r.game_id.clone());
            c.reversed_by.push(r.reversed_by);
        }
        c
    }
}

/// Writes everything the accepted requests did in one statement: new and
/// changed action rows, ledger entries, rollup deltas, the player's balance.
///
/// Each row appears once (the rules merge repeated changes first), because
/// the parts of one statement cannot see each other's writes.
pub async fn write_effects(conn: &mut PgConnection, wallet: &Wallet) -> AppResult<()> {
    let effects = &wallet.effects;
    if effects.is_empty() {
        return Ok(());
    }
    let (inserted, updated) = wallet.split_actions();
    let inserted: ActionColumns = inserted.into_iter().collect();
    let updated: ActionColumns = updated.into_iter().collect();

    let entries = &effects.entries;
    let e_seq: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let e_tx_id: Vec<Uuid> = entries.iter().map(|e| e.tx_id).collect();
    let e_kind: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let e_amount: Vec<i64> = entries.iter().map(|e| e.amount).collect();
    let e_before: Vec<i64> = entries.iter().map(|e| e.balance_before).collect();
    let e_after: Vec<i64> = entries.iter().map(|e| e.balance_after).collect();
    let e_action_id: Vec<Uuid> = entries.iter().map(|e| e.action_id).collect();
    let e_original: Vec<Option<Uuid>> = entries.iter().map(|e| e.original_action_id).collect();
    let e_game: Vec<Option<String>> = entries.iter().map(|e| e.game.clone()).collect();
    let e_game_id: Vec<Option<String>> = entries.iter().map(|e| e.game_id.clone()).collect();

    let (mut r_bucket, mut r_game) = (Vec::new(), Vec::new());
    let (mut r_bet, mut r_win, mut r_rb_bet, mut r_rb_win) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((bucket, game), d) in &effects.rollups {
        r_bucket.push(*bucket);
        r_game.push(game.clone());
        r_bet.push(d.total_bet);
        r_win.push(d.total_win);
        r_rb_bet.push(d.rolled_back_bet);
        r_rb_win.push(d.rolled_back_win);
    }
    let (mut n_bucket, mut n_game, mut n_game_id, mut n_delta) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((bucket, game, game_id), delta) in effects.rounds.iter().filter(|(_, d)| **d != 0) {
        n_bucket.push(*bucket);
        n_game.push(game.clone());
        n_game_id.push(game_id.clone());
        n_delta.push(*delta);
    }

    let player = &wallet.player;
    sqlx::query!(
        r#"
        WITH inserted_actions AS (
            INSERT INTO actions (action_id, player_id, kind, amount, original_action_id,
                                 tx_id, processed_at, game, game_id, reversed_by)
            SELECT a.action_id, $1, a.kind::entry_kind, a.amount, a.original_action_id,
                   a.tx_id, a.processed_at, a.game, a.game_id, a.reversed_by
            FROM UNNEST($5::uuid[], $6::text[], $7::int8[], $8::uuid[], $9::uuid[],
                        $10::timestamptz[], $11::text[], $12::text[], $13::uuid[])
                 AS a(action_id, kind, amount, original_action_id, tx_id,
                      processed_at, game, game_id, reversed_by)
        ),
        -- Placeholders filled by their late original, originals marked reversed.
        -- Only this player's rows: their lock is held, so nobody else changes them.
        updated_actions AS (
            UPDATE actions AS t
            SET kind = a.kind::entry_kind, amount = a.amount, original_action_id = a.original_action_id,
                tx_id = a.tx_id, processed_at = a.processed_at, game = a.game,
                game_id = a.game_id, reversed_by = a.reversed_by
            FROM UNNEST($14::uuid[], $15::text[], $16::int8[], $17::uuid[], $18::uuid[],
                        $19::timestamptz[], $20::text[], $21::text[], $22::uuid[])
                 AS a(action_id, kind, amount, original_action_id, tx_id,
                      processed_at, game, game_id, reversed_by)
            WHERE t.action_id = a.action_id AND t.player_id = $1
        ),
        entries AS (
            INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                                balance_after, action_id, original_action_id, game, game_id)
            SELECT $1, e.seq, $4, e.tx_id, e.kind::entry_kind, e.amount, e.balance_before,
                   e.balance_after, e.action_id, e.original_action_id, e.game, e.game_id
            FROM UNNEST($23::int8[], $24::uuid[], $25::text[], $26::int8[], $27::int8[],
                        $28::int8[], $29::uuid[], $30::uuid[], $31::text[], $32::text[])
                 AS e(seq, tx_id, kind, amount, balance_before, balance_after,
                      action_id, original_action_id, game, game_id)
        ),
        -- Round bookkeeping for exact distinct-round counts (see
        -- migrations/0002_report_rounds.sql). Only this player's rows are read
        -- or written, under the lock already held.
        round_deltas AS (
            SELECT n.bucket, n.game, n.game_id, n.delta
            FROM UNNEST($40::timestamptz[], $41::text[], $42::text[], $43::int4[])
                 AS n(bucket, game, game_id, delta)
        ),
        -- Every stored row of the rounds touched now.
        round_family AS (
            SELECT f.bucket, f.game, f.game_id, f.split
            FROM round_buckets f
            WHERE f.player_id = $1 AND f.game_id IN (SELECT game_id FROM round_deltas)
        ),
        -- Rounds that now have rows in more than one (hour, game).
        split_rounds AS (
            SELECT k.game_id
            FROM (SELECT bucket, game, game_id FROM round_deltas
                  UNION SELECT bucket, game, game_id FROM round_family) AS k
            GROUP BY k.game_id HAVING count(*) > 1
        ),
        rounds AS (
            INSERT INTO round_buckets AS b (player_id, bucket, game, game_id, live_bets, split)
            SELECT $1, k.bucket, k.game, k.game_id, k.delta,
                   k.game_id IN (SELECT game_id FROM split_rounds)
            FROM (SELECT bucket, game, game_id, delta FROM round_deltas
                  UNION ALL
                  -- Stored rows of a round that just became split get the mark too.
                  SELECT f.bucket, f.game, f.game_id, 0 FROM round_family f
                  WHERE NOT f.split
                    AND f.game_id IN (SELECT game_id FROM split_rounds)
                    AND NOT EXISTS (SELECT 1 FROM round_deltas d
                                    WHERE d.bucket = f.bucket AND d.game = f.game
                                      AND d.game_id = f.game_id)) AS k
            ON CONFLICT (player_id, bucket, game, game_id) DO UPDATE
            SET live_bets = b.live_bets + excluded.live_bets,
                split = b.split OR excluded.split
            RETURNING b.bucket, b.game, b.game_id, b.live_bets
        ),
        -- Rows whose live_bets crossed zero change the hour's live-round count.
        round_changes AS (
            SELECT r.bucket, r.game,
                   sum((r.live_bets > 0)::int - (r.live_bets - d.delta > 0)::int) AS rounds
            FROM rounds r
            JOIN round_deltas d
              ON d.bucket = r.bucket AND d.game = r.game AND d.game_id = r.game_id
            GROUP BY r.bucket, r.game
        ),
        rollups AS (
            INSERT INTO rtp_hourly AS h (player_id, bucket, game, currency, total_bet, total_win,
                                         rolled_back_bet, rolled_back_win, rounds)
            SELECT $1, coalesce(r.bucket, c.bucket), coalesce(r.game, c.game), $33,
                   coalesce(r.bet, 0), coalesce(r.win, 0), coalesce(r.rb_bet, 0),
                   coalesce(r.rb_win, 0), coalesce(c.rounds, 0)
            FROM UNNEST($34::timestamptz[], $35::text[], $36::int8[], $37::int8[],
                        $38::int8[], $39::int8[]) AS r(bucket, game, bet, win, rb_bet, rb_win)
            FULL JOIN round_changes c ON c.bucket = r.bucket AND c.game = r.game
            ON CONFLICT (player_id, bucket, game) DO UPDATE
            SET total_bet = h.total_bet + excluded.total_bet,
                total_win = h.total_win + excluded.total_win,
                rolled_back_bet = h.rolled_back_bet + excluded.rolled_back_bet,
                rolled_back_win = h.rolled_back_win + excluded.rolled_back_win,
                rounds = h.rounds + excluded.rounds
        )
        UPDATE players SET balance = $2, last_seq = $3, updated_at = $4 WHERE id = $1
        "#,
        player.id,
        player.balance,
        player.last_seq,
        wallet.now,
        &inserted.action_id,
        &inserted.kind as _,
        &inserted.amount as _,
        &inserted.original_action_id as _,
        &inserted.tx_id as _,
        &inserted.processed_at as _,
        &inserted.game as _,
        &inserted.game_id as _,
        &inserted.reversed_by as _,
        &updated.action_id,
        &updated.kind as _,
        &updated.amount as _,
        &updated.original_action_id as _,
        &updated.tx_id as _,
        &updated.processed_at as _,
        &updated.game as _,
        &updated.game_id as _,
        &updated.reversed_by as _,
        &e_seq,
        &e_tx_id,
        &e_kind as _,
        &e_amount,
        &e_before,
        &e_after,
        &e_action_id,
        &e_original as _,
        &e_game as _,
        &e_game_id as _,
        player.currency,
        &r_bucket,
        &r_game,
        &r_bet,
        &r_win,
        &r_rb_bet,
        &r_rb_win,
        &n_bucket,
        &n_game,
        &n_game_id,
        &n_delta,
    )
    .execute(conn)
    .await?;
    Ok(())
}
