//! Passwords: Argon2id hashes, computed off the async runtime by a bounded
//! set of blocking threads.
//!
//! One hash takes tens of milliseconds of one core and 19 MiB of memory by
//! design. Run on the runtime's worker threads, a burst of logins would
//! stall every other request, provider bets included; so each hash runs on
//! Tokio's blocking pool, and a semaphore lets at most [`Passwords::new`]'s
//! `workers` of them run at once. The others wait their turn without holding
//! a thread (the request timeout still applies to them).

use std::sync::{Arc, OnceLock};

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

/// The bounded Argon2 workers of this instance.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// At most `workers` hashes at once (at least one).
    pub fn new(workers: usize) -> Passwords {
        Passwords { permits: Arc::new(Semaphore::new(workers.max(1))) }
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

    /// Runs `work` on the blocking pool once a permit is free. The permit
    /// goes with the work, so a request that gives up waiting for the answer
    /// does not let another hash start before this one ends.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
        let permit = self.permits.clone().acquire_owned().await.map_err(AppError::internal)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(AppError::internal)
    }
}

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

    #[tokio::test]
    async fn an_unknown_account_never_matches_not_even_the_dummy_password() {
        let passwords = Passwords::new(1);
        assert!(!passwords.verify("no account has this password".into(), None).await.unwrap());
        assert!(!passwords.verify("anything at all".into(), None).await.unwrap());
    }
}
