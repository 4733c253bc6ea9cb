//! The audit trail: one tamper-evident entry per change, written by the
//! domain module that makes the change, in the same transaction.
//!
//! - `chain`: the canonical content of an entry and the SHA-256 link to the
//!   entry before it.
//! - `store`: writing an entry with its change, sealing pending entries into
//!   the chain, pages of entries, and verifying the whole chain.
//!
//! A writer builds an [`Entry`] (most simply from the [`Origin`] its handler
//! passed down) and calls [`record`] in the transaction of its change. How
//! entries are chained without making writers wait, and what the database
//! refuses, is in docs/ARCHITECTURE.md, "Audit trail".

pub mod chain;
pub mod store;

use std::fmt;
use std::str::FromStr;

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::{parse_time, storable};
use crate::error::{AppError, AppResult};
use crate::http::QueryParams;
use crate::ops::observe::RequestId;
use crate::paging::PageQuery;
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
pub use store::record;
use store::{Filter, StoredEntry, Verdict};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The platform's bootstrap admin token.
    Platform,
    /// A staff account, by `staff_id`.
    Staff(String),
    /// A player acting on their own account, by `user_id`.
    Player(String),
    /// The service itself (scheduled jobs, expiries).
    System,
}

impl Actor {
    /// `actor.type` in an entry.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Platform => "platform",
            Actor::Staff(_) => "staff",
            Actor::Player(_) => "player",
            Actor::System => "system",
        }
    }

    /// `actor.id` in an entry: staff and players are named, the others not.
    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::Staff(id) | Actor::Player(id) => Some(id),
            Actor::Platform | Actor::System => None,
        }
    }
}

/// What kind of change an entry records: `<what>.<change>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PlayerCreate,
    PlayerStatus,
    PlayerDeposit,
    PlayerWithdrawal,
    PlayerKyc,
    PlayerLimits,
    PlayerExclusion,
    OperatorCreate,
    OperatorUpdate,
    ProviderKeyCreate,
    ProviderKeyRevoke,
    StaffCreate,
    StaffDelete,
    StaffPassword,
    AuthLogin,
    AuthLoginFailed,
    BonusGrant,
    BonusForfeit,
    GameCategory,
    CampaignCreate,
    CampaignUpdate,
}

impl Action {
    /// Every action, in the order docs/API.md lists them.
    pub const ALL: [Action; 21] = [
        Action::PlayerCreate,
        Action::PlayerStatus,
        Action::PlayerDeposit,
        Action::PlayerWithdrawal,
        Action::PlayerKyc,
        Action::PlayerLimits,
        Action::PlayerExclusion,
        Action::OperatorCreate,
        Action::OperatorUpdate,
        Action::ProviderKeyCreate,
        Action::ProviderKeyRevoke,
        Action::StaffCreate,
        Action::StaffDelete,
        Action::StaffPassword,
        Action::AuthLogin,
        Action::AuthLoginFailed,
        Action::BonusGrant,
        Action::BonusForfeit,
        Action::GameCategory,
        Action::CampaignCreate,
        Action::CampaignUpdate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::PlayerCreate => "player.create",
            Action::PlayerStatus => "player.status",
            Action::PlayerDeposit => "player.deposit",
            Action::PlayerWithdrawal => "player.withdrawal",
            Action::PlayerKyc => "player.kyc",
            Action::PlayerLimits => "player.limits",
            Action::PlayerExclusion => "player.exclusion",
            Action::OperatorCreate => "operator.create",
            Action::OperatorUpdate => "operator.update",
            Action::ProviderKeyCreate => "provider_key.create",
            Action::ProviderKeyRevoke => "provider_key.revoke",
            Action::StaffCreate => "staff.create",
            Action::StaffDelete => "staff.delete",
            Action::StaffPassword => "staff.password",
            Action::AuthLogin => "auth.login",
            Action::AuthLoginFailed => "auth.login_failed",
            Action::BonusGrant => "bonus.grant",
            Action::BonusForfeit => "bonus.forfeit",
            Action::GameCategory => "game.category",
            Action::CampaignCreate => "campaign.create",
            Action::CampaignUpdate => "campaign.update",
        }
    }
}

impl FromStr for Action {
    type Err = ();

    fn from_str(text: &str) -> Result<Action, ()> {
        Action::ALL.into_iter().find(|a| a.as_str() == text).ok_or(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change, as written to the trail. `before` and `after` are JSON
/// objects of the fields that matter to the change; never a secret, token or
/// password (see [`forbidden_key`]).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The operator the change belongs to; `None` for a platform-wide one.
    pub operator: Option<i16>,
    pub actor: Actor,
    pub action: Action,
    /// What changed, as `<kind>:<id>`: see [`target`].
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
}

/// Where a change comes from: who asked, in which request. Handlers build
/// it and pass it to the domain function that makes the change.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Origin {
    pub fn new(actor: Actor, RequestId(id): RequestId) -> Origin {
        Origin { actor, request_id: Some(id) }
    }

    /// A change that no HTTP request carried (a command, a test).
    pub fn without_request(actor: Actor) -> Origin {
        Origin { actor, request_id: None }
    }

    /// An entry of this origin, without `before` or `after` yet.
    pub fn entry(&self, operator: Option<i16>, action: Action, target: String) -> Entry {
        Entry {
            operator,
            actor: self.actor.clone(),
            action,
            target,
            before: None,
            after: None,
            request_id: self.request_id.clone(),
        }
    }
}

impl Entry {
    pub fn before(self, before: Value) -> Entry {
        Entry { before: Some(before), ..self }
    }

    pub fn after(self, after: Value) -> Entry {
        Entry { after: Some(after), ..self }
    }
}

/// The `target` of an entry: `player:alice`, `operator:bluestar`, `staff:…`.
pub fn target(kind: &str, id: impl fmt::Display) -> String {
    format!("{kind}:{id}")
}

/// The path of the first key in `value`, at any depth, whose name says it
/// holds a secret, a token or a password; `None` when there is none.
pub fn forbidden_key(value: &Value) -> Option<String> {
    const FORBIDDEN: [&str; 3] = ["secret", "token", "password"];
    match value {
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let lower = key.to_ascii_lowercase();
            if FORBIDDEN.iter().any(|word| lower.contains(word)) {
                Some(key.clone())
            } else {
                forbidden_key(item).map(|inner| format!("{key}.{inner}"))
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| forbidden_key(item).map(|inner| format!("{i}.{inner}"))),
        _ => None,
    }
}

/// `GET /v1/audit` and `GET /v1/audit/verify` (admin, compliance).
pub fn routes() -> BackOffice {
    BackOffice::default().route(Method::GET, "/v1/audit", Permission::ReadAudit, list).route(
        Method::GET,
        "/v1/audit/verify",
        Permission::ReadAudit,
        verify,
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// `<kind>:<id>`, exactly (`player:alice`).
    #[param(min_length = 1, max_length = 512, example = "player:demo")]
    target: Option<String>,
    /// An action, exactly (`player.create`).
    #[param(example = "player.create")]
    action: Option<String>,
    /// RFC 3339; entries at or after.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; entries before.
    #[param(format = DateTime)]
    to: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> AppResult<Filter> {
        let target = self
            .target
            .clone()
            .map(|t| match storable(&t) {
                Ok(()) if (1..=512).contains(&t.chars().count()) => Ok(t),
                Ok(()) => Err(AppError::bad_request("target", "must be 1 to 512 characters")),
                Err(e) => Err(AppError::bad_request("target", e)),
            })
            .transpose()?;
        let action = self
            .action
            .as_deref()
            .map(|a| {
                Action::from_str(a)
                    .map(|a| a.as_str().to_string())
                    .map_err(|()| AppError::bad_request("action", "is not an audit action (see docs/API.md)"))
            })
            .transpose()?;
        let time = |field: &str, text: &Option<String>| {
            text.as_deref().map(|t| parse_time(t).map_err(|e| AppError::bad_request(field, e))).transpose()
        };
        let (from, to) = (time("from", &self.from)?, time("to", &self.to)?);
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(AppError::bad_request("to", "must be later than from"));
            }
        }
        Ok(Filter { target, action, from, to })
    }
}

/// An entry on the wire.
#[derive(Serialize, utoipa::ToSchema)]
struct EntryView {
    seq: i64,
    /// As the canonical form writes it, so a reader can recompute the hash.
    at: String,
    /// The operator's code; null for a platform-wide entry.
    operator: Option<String>,
    #[schema(value_type = ActorView)]
    actor: Value,
    action: String,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
    request_id: Option<String>,
    hash: String,
}

impl TryFrom<StoredEntry> for EntryView {
    type Error = sqlx::Error;

    fn try_from(e: StoredEntry) -> sqlx::Result<EntryView> {
        Ok(EntryView {
            seq: e.seq,
            at: chain::render_time(e.at),
            operator: e.operator_code,
            actor: json!({"type": e.actor_type, "id": e.actor_id}),
            action: e.action,
            target: e.target,
            before: store::parse_json(e.before.as_deref())?,
            after: store::parse_json(e.after.as_deref())?,
            request_id: e.request_id,
            hash: hex::encode(e.hash),
        })
    }
}

/// Who made a change: `platform` (the `ADMIN_TOKEN`), `staff`, `player` or `system`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the document's view of `actor`, which is built with `json!`
struct ActorView {
    #[schema(pattern = "^(platform|staff|player|system)$")]
    r#type: String,
    /// The staff or player id; null for the platform token and the service.
    id: Option<String>,
}

/// What `GET /v1/audit/verify` answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the document's view of the verdict, which is built with `json!`
enum VerdictView {
    /// The chain is intact.
    Intact {
        #[schema(value_type = bool, example = true)]
        ok: bool,
        entries: i64,
        /// 64 hex digits.
        head: String,
    },
    /// Entry `first_bad_seq` (or the chain head) was altered, inserted or removed.
    Broken {
        #[schema(value_type = bool, example = false)]
        ok: bool,
        first_bad_seq: i64,
    },
}

#[derive(Serialize, utoipa::ToSchema)]
struct AuditPage {
    data: Vec<EntryView>,
    next_cursor: Option<String>,
}

/// Newest first, after sealing what is pending: the entries of the operator
/// in scope, and for platform staff the platform-wide ones too.
#[utoipa::path(get, path = "/v1/audit", tag = "back office", operation_id = "audit_list",
    params(AuditQuery),
    responses((status = 200, description = "Entries, newest first.", body = AuditPage)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<AuditQuery>,
) -> AppResult<Json<AuditPage>> {
    let filter = query.filter()?;
    store::seal_all(&state.pool).await?;
    let page = PageQuery { limit: query.limit.clone(), cursor: query.cursor.clone() };
    let (limit, cursor) = (page.limit()?, page.history_cursor()?);
    let (rows, next) =
        store::list(&state.pool, caller.operator, caller.is_platform(), &filter, limit, cursor).await?;
    let data = rows.into_iter().map(EntryView::try_from).collect::<sqlx::Result<_>>()?;
    Ok(Json(AuditPage { data, next_cursor: next.map(|c| c.encode()) }))
}

/// The whole chain, whoever calls: there is one chain for all operators.
/// What is pending is sealed first, so every committed change is covered.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "back office", operation_id = "audit_verify",
    responses((status = 200, description = "Whether the whole chain is intact.", body = VerdictView,
        example = json!({"ok": true, "entries": 42, "head": "9f2c0e4b7a1d3c5e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"}))))]
async fn verify(State(state): State<AppState>) -> AppResult<Json<Value>> {
    store::seal_all(&state.pool).await?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(match store::verify(&mut conn).await? {
        Verdict::Intact { entries, head } => {
            json!({"ok": true, "entries": entries, "head": chain::hex(&head)})
        }
        Verdict::Broken { first_bad_seq } => json!({"ok": false, "first_bad_seq": first_bad_seq}),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_read_back_as_their_action() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("player.Create".parse::<Action>().is_err());
        assert!("".parse::<Action>().is_err());
    }

    #[test]
    fn secrets_are_found_at_any_depth_and_in_any_case() {
        assert_eq!(forbidden_key(&json!({"amount": 1, "idempotency_key": "k"})), None);
        assert_eq!(forbidden_key(&json!({"Secret": "x"})), Some("Secret".into()));
        assert_eq!(forbidden_key(&json!({"a": {"api_token": "x"}})), Some("a.api_token".into()));
        assert_eq!(forbidden_key(&json!({"a": [1, {"PasswordHash": "x"}]})), Some("a.1.PasswordHash".into()));
    }
}
