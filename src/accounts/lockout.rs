//! The lockout of repeated failed sign-ins, for player logins and console
//! sign-ins alike: the `max_failures`th failure within [`LOCKOUT_MINUTES`]
//! locks the email for as long again, and an attempt refused by a lockout
//! counts for nothing, so a lockout does not prolong itself. The rule itself
//! is the SQL function `failure_counted` (migration 0013).

use serde_json::json;
use sqlx::PgPool;

use crate::audit::{self, Action, Origin};
use crate::error::{AppError, AppResult};

/// How long failures count towards a lockout, and how long a lockout lasts.
pub const LOCKOUT_MINUTES: i32 = 15;

/// Why a sign-in failed, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The email has no account.
    UnknownEmail,
    WrongPassword,
    /// Refused unchecked: a lockout was in force.
    Locked,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownEmail => "unknown_email",
            Failure::WrongPassword => "wrong_password",
            Failure::Locked => "locked",
        }
    }
}

/// Where a sign-in failed, which says where its failures are counted and
/// which operator its audit entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// A player's login at an operator (`login_failures`).
    Player { operator: i16 },
    /// The back-office console's sign-in (`staff_login_failures`), by a
    /// staff member of this operator (`None`: global staff, or no staff
    /// member has the email).
    Console { operator: Option<i16> },
}

/// A sign-in attempt, which may fail.
pub struct Attempt<'a> {
    pub door: Door,
    pub origin: Origin,
    pub email_key: &'a str,
    /// What its audit entry names: the account or staff member the email
    /// belongs to, else the email.
    pub target: String,
    /// The failures within [`LOCKOUT_MINUTES`] that lock the email at `door`.
    pub max_failures: u32,
}

impl Attempt<'_> {
    /// Records that the attempt failed, audited (`auth.login_failed`), with
    /// the failures it counts and whether they lock the email now.
    pub async fn failed(&self, pool: &PgPool, failure: Failure) -> AppResult<()> {
        let Attempt { door, ref origin, email_key, ref target, max_failures } = *self;
        let max_failures = i32::try_from(max_failures).map_err(AppError::internal)?;
        let mut tx = pool.begin().await?;
        let mut after = json!({"email": email_key, "reason": failure.as_str()});
        let operator = match door {
            Door::Player { operator } => Some(operator),
            Door::Console { operator } => {
                after["via"] = json!("console");
                operator
            }
        };
        if failure != Failure::Locked {
            // One statement, under the row's lock: concurrent failures each count.
            let (failures, locked) = match door {
                Door::Player { operator } => {
                    let row = sqlx::query!(
                        r#"INSERT INTO login_failures AS f (operator_id, email_key, recent, locked_until)
                           SELECT $1, $2, c.recent, c.locked_until FROM failure_counted('{}', NULL, $3, $4) AS c
                           ON CONFLICT (operator_id, email_key) DO UPDATE SET (recent, locked_until) =
                               (SELECT c.recent, c.locked_until FROM failure_counted(f.recent, f.locked_until, $3, $4) AS c)
                           RETURNING cardinality(f.recent) AS "failures!", coalesce(f.locked_until > now(), false) AS "locked!""#,
                        operator,
                        email_key,
                        max_failures,
                        LOCKOUT_MINUTES,
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    (row.failures, row.locked)
                }
                Door::Console { .. } => {
                    let row = sqlx::query!(
                        r#"INSERT INTO staff_login_failures AS f (email_key, recent, locked_until)
                           SELECT $1, c.recent, c.locked_until FROM failure_counted('{}', NULL, $2, $3) AS c
                           ON CONFLICT (email_key) DO UPDATE SET (recent, locked_until) =
                               (SELECT c.recent, c.locked_until FROM failure_counted(f.recent, f.locked_until, $2, $3) AS c)
                           RETURNING cardinality(f.recent) AS "failures!", coalesce(f.locked_until > now(), false) AS "locked!""#,
                        email_key,
                        max_failures,
                        LOCKOUT_MINUTES,
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    (row.failures, row.locked)
                }
            };
            after["failures"] = json!(failures);
            after["locked"] = json!(locked);
        }
        let entry = origin.entry(operator, Action::AuthLoginFailed, target.clone()).after(after);
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }
}
