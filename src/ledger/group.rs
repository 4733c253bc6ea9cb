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

use std::future::Future;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::process::{process_group_probing, process_submission, Probe};
use super::rules::Receipt;
use super::Submission;
use crate::domain::MAX_AMOUNT;
use crate::error::{panic_message, AppError, AppResult};
use crate::provider::wire::MAX_ACTIONS;

/// Requests waiting per shard before senders are made to wait.
const QUEUE_DEPTH: usize = 1024;

/// At most this many requests share one transaction.
pub const MAX_GROUP: usize = 64;

// The rules sum a group's rollup deltas in i64: one (hour, game) of one
// player gets at most MAX_GROUP × MAX_ACTIONS amounts of at most MAX_AMOUNT.
const _: () = assert!((MAX_GROUP * MAX_ACTIONS) as i128 * MAX_AMOUNT as i128 <= i64::MAX as i128);

/// After a group met a stored action it took to be new (a replay, usually),
/// this many groups of the shard read every action id first: while a provider
/// is replaying, taking ids to be new would make most groups run twice.
const CAREFUL_GROUPS: u32 = 32;

/// A request waiting in a shard's queue, and where its outcome goes.
pub struct Job {
    pub submission: Submission,
    pub reply: oneshot::Sender<AppResult<Receipt>>,
}

/// The entry point of provider requests that carry actions.
#[derive(Clone)]
pub struct GroupCommitter {
    shards: Vec<mpsc::Sender<Job>>,
    hasher: std::collections::hash_map::RandomState,
}

impl GroupCommitter {
    /// Starts `shards` loops (at most one database connection each), each
    /// committing at most `max_group` (at most [`MAX_GROUP`]) requests per
    /// transaction.
    pub fn start(pool: PgPool, shards: usize, max_group: usize) -> GroupCommitter {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
                let shard = Shard { pool: pool.clone(), held: None, careful_groups: 0 };
                tokio::spawn(run_shard(receiver, max_group.clamp(1, MAX_GROUP), shard));
                sender
            })
            .collect();
        GroupCommitter { shards, hasher: Default::default() }
    }

    /// Queues a request on its player's shard and waits for its own outcome.
    pub async fn submit(&self, submission: Submission) -> AppResult<Receipt> {
        let player = (submission.operator, submission.batch.user_id.as_str());
        let shard = self.hasher.hash_one(player) as usize % self.shards.len();
        let (reply, outcome) = oneshot::channel();
        self.shards[shard]
            .send(Job { submission, reply })
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("group commit shard stopped")))?;
        outcome
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("group commit shard dropped a request")))?
    }
}

/// What a shard loop does with each group it takes from its queue.
pub trait GroupHandler: Send + 'static {
    /// Commits `jobs` as one group and answers each of them.
    fn handle(&mut self, jobs: Vec<Job>) -> impl Future<Output = ()> + Send;
    /// The queue ran empty: a good moment to give resources back.
    fn idle(&mut self);
    /// The last group panicked: forget anything it may have left half done.
    fn reset(&mut self);
}

/// One shard: take what is queued, commit it as a group, answer, repeat.
/// Runs on its own task, so a client that goes away never leaves a group
/// half-answered.
///
/// A group that fails for any reason, a panic included, must not end the
/// loop: every player of the shard would get 500s until a restart. A panic is
/// caught here; the group's requests, whose reply senders it dropped, answer
/// 500, and the loop goes on with the next group.
pub async fn run_shard<H: GroupHandler>(mut queue: mpsc::Receiver<Job>, max_group: usize, mut handler: H) {
    let mut jobs = Vec::with_capacity(max_group);
    while queue.recv_many(&mut jobs, max_group).await > 0 {
        let group = std::mem::take(&mut jobs);
        let size = group.len();
        if let Err(panic) = AssertUnwindSafe(handler.handle(group)).catch_unwind().await {
            let cause = panic_message(&*panic);
            tracing::error!(
                size,
                cause,
                "a group commit panicked; its requests answered 500, the loop goes on"
            );
            handler.reset();
        }
        if queue.is_empty() {
            handler.idle();
        }
    }
}

/// The database side of a shard loop.
///
/// While requests keep coming, the loop keeps its database connection from one
/// group to the next: taking a connection from the pool costs a health-check
/// round trip every time, one more wait in every group's cycle. It gives the
/// connection back when its queue runs empty, and after any failed group, so
/// that a broken connection is replaced by a checked one.
struct Shard {
    pool: PgPool,
    held: Option<PoolConnection<Postgres>>,
    careful_groups: u32,
}

impl GroupHandler for Shard {
    async fn handle(&mut self, jobs: Vec<Job>) {
        let probe = if self.careful_groups > 0 {
            self.careful_groups -= 1;
            Probe::Every
        } else {
            Probe::Originals
        };
        if self.commit(jobs, probe).await {
            self.careful_groups = CAREFUL_GROUPS;
        }
    }

    fn idle(&mut self) {
        self.held = None;
    }

    fn reset(&mut self) {
        // The connection may be in the middle of anything: close it rather
        // than give it back to the pool.
        if let Some(mut conn) = self.held.take() {
            conn.close_on_drop();
        }
    }
}

impl Shard {
    /// Commits one group on the held connection (taken from the pool if there
    /// is none) and answers each request; says whether the group met a stored
    /// action it took to be new.
    async fn commit(&mut self, jobs: Vec<Job>, probe: Probe) -> bool {
        crate::ops::metrics::record_group_size(jobs.len());
        let batches: Vec<&Submission> = jobs.iter().map(|job| &job.submission).collect();
        let group = match &mut self.held {
            Some(conn) => process_group_probing(conn, &batches, probe).await,
            None => match self.pool.acquire().await {
                Ok(conn) => process_group_probing(self.held.insert(conn), &batches, probe).await,
                Err(error) => Err(error.into()),
            },
        };
        if group.is_err() {
            self.held = None;
        }
        match group {
            Ok(group) => {
                for (job, outcome) in jobs.into_iter().zip(group.outcomes) {
                    let _ = job.reply.send(outcome);
                }
                return group.met_stored_action;
            }
            Err(error) if jobs.len() == 1 => {
                if let Some(job) = jobs.into_iter().next() {
                    let _ = job.reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(error = %error, size = jobs.len(), "group write failed; retrying one request at a time");
                for job in jobs {
                    let outcome = process_submission(&self.pool, &job.submission).await;
                    let _ = job.reply.send(outcome);
                }
            }
        }
        false
    }
}

/// Shard loops for `pool_size` connections when none are configured: one
/// per core of this host, and at least two, so that one loop's commit can
/// wait for its WAL flush while the other works; never more than the pool
/// size minus one, since a busy loop keeps a connection and the back office
/// and health checks need one too.
pub fn default_shards(pool_size: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get()).max(2);
    cores.min((pool_size as usize).saturating_sub(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, UserId};
    use crate::ledger::Batch;

    /// Answers every request with its own balance, and panics on a request
    /// for the player `panic`.
    struct Echo {
        resets: usize,
    }

    impl GroupHandler for Echo {
        async fn handle(&mut self, jobs: Vec<Job>) {
            for job in jobs {
                if job.submission.batch.user_id.as_str() == "panic" {
                    panic!("a fault in the middle of a group");
                }
                let _ = job.reply.send(Ok(Receipt { transactions: Vec::new(), balance: 7 }));
            }
        }
        fn idle(&mut self) {}
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn job(user_id: &str) -> (Job, oneshot::Receiver<AppResult<Receipt>>) {
        let (reply, outcome) = oneshot::channel();
        let batch = Batch {
            user_id: UserId::try_from(user_id.to_string()).unwrap(),
            currency: Currency::try_from("USD".to_string()).unwrap(),
            game: None,
            game_id: None,
            actions: Vec::new(),
        };
        (Job { submission: Submission::open(1, batch), reply }, outcome)
    }

    #[tokio::test]
    async fn a_group_that_panics_answers_its_requests_and_the_loop_goes_on() {
        let (sender, receiver) = mpsc::channel(8);
        let shard = tokio::spawn(run_shard(receiver, 1, Echo { resets: 0 }));

        let (doomed, doomed_outcome) = job("panic");
        sender.send(doomed).await.unwrap();
        assert!(
            doomed_outcome.await.is_err(),
            "the panicking group's request is answered (as 500 by submit)"
        );

        let (next, next_outcome) = job("after");
        sender.send(next).await.unwrap();
        assert_eq!(next_outcome.await.unwrap().unwrap().balance, 7, "the loop still answers");

        drop(sender);
        shard.await.expect("the loop ended normally, not by a panic");
    }

    #[test]
    fn default_loops_leave_a_connection_for_the_rest() {
        assert_eq!(default_shards(1), 1);
        assert_eq!(default_shards(2), 1);
        assert!(default_shards(16) >= 2);
    }
}
