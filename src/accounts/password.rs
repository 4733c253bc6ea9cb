//! Passwords: Argon2id hashes, computed off the async runtime by a bounded
//! set of threads of their own, at a lower scheduling priority.
//!
//! One hash takes tens of milliseconds of one core and 19 MiB of memory by
//! design. Run on the runtime's worker threads, a burst of logins would
//! stall every other request, provider bets included. So hashes run on
//! [`Passwords::new`]'s `workers` threads and nowhere else: at most that
//! many at once, and the others wait their turn holding no thread (the
//! request timeout still applies to them). Those threads run at nice
//! [`HASH_NICE`], so when the cores are busy the scheduler gives them a small
//! share and the hot path the rest: a login waits a little longer rather
//! than a bet (docs/BENCHMARKS.md, "Logins beside the hot path").

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

/// Memory per hash, in KiB: 19 MiB, OWASP's first recommended Argon2id
/// setting (with [`PASSES`] and [`LANES`]); docs/ARCHITECTURE.md says why.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over the memory.
pub const PASSES: u32 = 2;
/// Parallel lanes: one, so a hash occupies one core and the bound on
/// concurrent hashes is a bound on cores.
pub const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a password nobody has, with the same parameters: what a login
/// for an unknown email is checked against, so that it costs what a wrong
/// password costs and its timing tells nothing.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2().hash_password(b"no account has this password", &salt).expect("hashing works").to_string()
    })
}

/// How much nicer the hashing threads are than the service's own: a thread
/// 10 nice values lower weighs about a tenth as much when both want a core
/// (Linux CFS weights 110 and 1024 at nice 10 and 0).
pub const HASH_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The bounded Argon2 workers of this instance.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Passwords {
    /// `workers` hashing threads (at least one). They end when the last
    /// clone of this value is dropped.
    pub fn new(workers: usize) -> Passwords {
        let workers = workers.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = queue.lock().map_err(|_| ()).and_then(|q| q.recv().map_err(|_| ()));
                        match next {
                            Ok(job) => job(),
                            Err(()) => return,
                        }
                    }
                })
                .expect("cannot start a password-hashing thread");
        }
        Passwords { permits: Arc::new(Semaphore::new(workers)), jobs }
    }

    /// Half the cores this process may use, at least one: logins can take
    /// no more than that from the hot path.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of a
    /// new password, with a fresh random salt.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
        })
        .await?
        .map_err(|e| AppError::internal(anyhow::anyhow!("cannot hash a password: {e}")))
    }

    /// Whether `password` matches `stored`; with no stored hash (an unknown
    /// email) it is checked against a dummy hash and is never a match. The
    /// parameters are those written in the stored hash, so hashes made with
    /// other parameters keep verifying.
    pub async fn verify(&self, password: String, stored: Option<String>) -> AppResult<bool> {
        self.run(move || {
            let known = stored.is_some();
            let text = stored.as_deref().unwrap_or_else(|| dummy_hash());
            let hash = PasswordHash::new(text).map_err(|e| {
                AppError::internal(anyhow::anyhow!("a stored password hash is unreadable: {e}"))
            })?;
            Ok(argon2().verify_password(password.as_bytes(), &hash).is_ok() && known)
        })
        .await?
    }

    /// Runs `work` on a hashing thread once a permit is free. The permit
    /// goes with the work, so a request that gives up waiting for the answer
    /// does not let another hash start before this one ends.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
        let permit = self.permits.clone().acquire_owned().await.map_err(AppError::internal)?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = answer.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| AppError::internal(anyhow::anyhow!("the hashing threads are gone")))?;
        answered.await.map_err(|_| AppError::internal(anyhow::anyhow!("a password hash panicked")))
    }
}

/// Lowers the calling thread by [`HASH_NICE`] (to 19 at most). On Linux the nice value
/// belongs to each thread (not to the process, as POSIX has it), so this
/// touches only the hashing thread. Best effort: a failure leaves the thread
/// at the service's own priority, which is still bounded in number.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid takes no arguments and cannot fail; setpriority reads
    // only its integer arguments and reports failure through its result.
    let result = unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let own = libc::getpriority(libc::PRIO_PROCESS, thread);
        libc::setpriority(libc::PRIO_PROCESS, thread, (own + HASH_NICE).min(19))
    };
    if result != 0 {
        tracing::warn!("cannot lower the priority of a password-hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let passwords = Passwords::new(1);
        let hash = passwords.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(passwords.verify("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify("correct horse batterY".into(), Some(hash.clone())).await.unwrap());
        let again = passwords.hash("correct horse battery".into()).await.unwrap();
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_their_own_threads_at_a_lower_priority() {
        let passwords = Passwords::new(2);
        let read_nice = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Field 19 (nice) counted after the command's closing parenthesis.
            let fields: Vec<String> =
                stat.rsplit_once(')').unwrap().1.split_whitespace().map(String::from).collect();
            (std::thread::current().name().map(String::from), fields[16].parse::<i32>().unwrap())
        };
        let (name, nice) = passwords.run(read_nice).await.unwrap();
        assert!(name.is_some_and(|n| n.starts_with("argon2-")));
        let own = read_nice().1;
        assert_eq!(nice, (own + HASH_NICE).min(19), "the service's own threads are at {own}");
    }

    #[tokio::test]
    async fn an_unknown_account_never_matches_not_even_the_dummy_password() {
        let passwords = Passwords::new(1);
        assert!(!passwords.verify("no account has this password".into(), None).await.unwrap());
        assert!(!passwords.verify("anything at all".into(), None).await.unwrap());
    }
}
