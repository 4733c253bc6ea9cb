//! Group commit: concurrent requests share one database transaction.
//!
//! Requests are routed by player to one of a fixed number of shard loops.
//! Each loop takes everything queued for it (up to a cap) and applies it with
//! [`process_group_probing`]: one lock statement for the group's players, a
//! read of the originals its rollbacks name (if any), the rules per request in
//! arrival order, one write, one commit.
//! Every request still gets its own all-or-nothing outcome and its own error.
//!
//! Why it is fast: the four round trips and the commit's WAL flush of a
//! transaction are paid once per group instead of once per request. A hot
//! player's requests all land in the same shard, so they coalesce instead of
//! queueing on the row lock one transaction at a time. Under light load a
//! group is a single request and nothing waits for company.
//!
//! Why it stays correct: a player always maps to the same shard, so its
//! requests are applied in the order they were queued, by one loop at a time;
//! the rules run exactly as for a single request. If the combined write or the
//! commit fails (say another player's concurrent request claimed the same
//! action_id), the group is retried one request at a time, so only the
//! request at fault gets the error. A retry after an ambiguous commit is safe:
//! action ids make every request idempotent.

use std::hash::BuildHasher;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::process::{process_batch, process_group_probing, Probe};
use super::rules::Receipt;
use super::Batch;
use crate::error::{AppError, AppResult};

/// Requests waiting per shard before senders are made to wait.
const QUEUE_DEPTH: usize = 1024;

/// After a group met a stored action it took to be new (a replay, usually),
/// this many groups of the shard read every action id first: while a provider
/// is replaying, taking ids to be new would make most groups run twice.
const CAREFUL_GROUPS: u32 = 32;

struct Job {
    batch: Batch,
    reply: oneshot::Sender<AppResult<Receipt>>,
}

/// The entry point of provider requests that carry actions.
#[derive(Clone)]
pub struct GroupCommitter {
    shards: Vec<mpsc::Sender<Job>>,
    hasher: std::collections::hash_map::RandomState,
}

impl GroupCommitter {
    /// Starts `shards` loops (at most one database connection each), each
    /// committing at most `max_group` requests per transaction.
    pub fn start(pool: PgPool, operator: i16, shards: usize, max_group: usize) -> GroupCommitter {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(run_shard(pool.clone(), operator, receiver, max_group.max(1)));
                sender
            })
            .collect();
        GroupCommitter { shards, hasher: Default::default() }
    }

    /// Queues `batch` on its player's shard and waits for its own outcome.
    pub async fn submit(&self, batch: Batch) -> AppResult<Receipt> {
        let shard = self.hasher.hash_one(batch.user_id.as_str()) as usize % self.shards.len();
        let (reply, outcome) = oneshot::channel();
        self.shards[shard]
            .send(Job { batch, reply })
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("group commit shard stopped")))?;
        outcome
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("group commit shard dropped a request")))?
    }
}

/// One shard: take what is queued, commit it as a group, answer, repeat.
/// Runs on its own task, so a client that goes away never leaves a group
/// half-answered.
///
/// While requests keep coming, the loop keeps its database connection from one
/// group to the next: taking a connection from the pool costs a health-check
/// round trip every time, one more wait in every group's cycle. It gives the
/// connection back when its queue runs empty, and after any failed group, so
/// that a broken connection is replaced by a checked one.
async fn run_shard(pool: PgPool, operator: i16, mut queue: mpsc::Receiver<Job>, max_group: usize) {
    let mut jobs = Vec::with_capacity(max_group);
    let mut careful_groups = 0;
    let mut held: Option<PoolConnection<Postgres>> = None;
    while queue.recv_many(&mut jobs, max_group).await > 0 {
        let probe = if careful_groups > 0 {
            careful_groups -= 1;
            Probe::Every
        } else {
            Probe::Originals
        };
        if commit(&pool, &mut held, operator, std::mem::take(&mut jobs), probe).await {
            careful_groups = CAREFUL_GROUPS;
        }
        if queue.is_empty() {
            held = None;
        }
    }
}

/// Commits one group on the held connection (taken from the pool if there is
/// none) and answers each request; says whether the group met a stored action
/// it took to be new.
async fn commit(
    pool: &PgPool,
    held: &mut Option<PoolConnection<Postgres>>,
    operator: i16,
    jobs: Vec<Job>,
    probe: Probe,
) -> bool {
    crate::ops::metrics::record_group_size(jobs.len());
    let batches: Vec<&Batch> = jobs.iter().map(|job| &job.batch).collect();
    let group = match held {
        Some(conn) => process_group_probing(conn, operator, &batches, probe).await,
        None => match pool.acquire().await {
            Ok(conn) => process_group_probing(held.insert(conn), operator, &batches, probe).await,
            Err(error) => Err(error.into()),
        },
    };
    if group.is_err() {
        *held = None;
    }
    match group {
        Ok(group) => {
            for (job, outcome) in jobs.into_iter().zip(group.outcomes) {
                let _ = job.reply.send(outcome);
            }
            return group.met_stored_action;
        }
        Err(error) if jobs.len() == 1 => {
            let _ = jobs.into_iter().next().expect("one job").reply.send(Err(error));
        }
        Err(error) => {
            tracing::debug!(error = %error, size = jobs.len(), "group write failed; retrying one request at a time");
            for job in jobs {
                let outcome = process_batch(pool, operator, &job.batch).await;
                let _ = job.reply.send(outcome);
            }
        }
    }
    false
}

/// Shard loops for `pool_size` connections: leave a little room for the
/// back office and health checks.
pub fn default_shards(pool_size: u32) -> usize {
    (pool_size as usize).saturating_sub(2).max(1)
}
