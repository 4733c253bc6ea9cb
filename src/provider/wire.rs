//! The provider request and response as they look on the wire, and their
//! validation into a [`Batch`]. Every rejection names the offending field.

use serde::{Deserialize, Serialize};
#[cfg(doc)]
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{short_text, Amount, Currency, UserId};
use crate::error::AppError;
use crate::http::parse_json;
use crate::ledger::rules::Receipt;
use crate::ledger::{Action, Batch};

/// At most this many actions in one request.
pub const MAX_ACTIONS: usize = 100;

/// A provider request: one player's batch of actions, applied in order, all or nothing.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "user_id": "8|USDT|USD", "currency": "USD", "game": "acceptance:test",
    "game_id": "1761032910488163506", "finished": true,
    "actions": [
        {"action": "bet", "action_id": "7c8affbf-53fd-4fcc-b1ca-18118c5dd287", "amount": 100},
        {"action": "win", "action_id": "86441c7a-560e-4501-b829-110af6a1b956", "amount": 250},
        {"action": "rollback", "action_id": "c9a9c3a7-e9e8-4f5a-9fdf-1d8a377d1b8f",
         "original_action_id": "4dbcbf1d-bcf6-43e9-9a62-7d3c0f3c6486"}]}))]
pub struct WireRequest {
    #[schema(min_length = 1, max_length = 255)]
    user_id: String,
    #[schema(pattern = "^[A-Z0-9]{3,10}$")]
    currency: String,
    #[schema(max_length = 255)]
    game: Option<String>,
    #[schema(max_length = 255)]
    game_id: Option<String>,
    #[allow(dead_code)] // accepted and validated as a bool; carries no money rule
    finished: Option<bool>,
    /// At most 100; absent or empty asks for the balance.
    #[schema(max_items = 100)]
    actions: Option<Vec<WireAction>>,
}

/// A bet, a win, or a rollback of another action.
#[derive(Deserialize, ToSchema)]
pub struct WireAction {
    #[schema(pattern = "^(bet|win|rollback)$")]
    action: String,
    /// Processed at most once, forever.
    action_id: Uuid,
    /// Minor units; required for bet and win, absent for rollback.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    amount: Option<i64>,
    /// The action a rollback reverses; only on a rollback.
    original_action_id: Option<Uuid>,
}

/// Parses and validates a provider request body.
pub fn parse_batch(body: &[u8]) -> Result<Batch, AppError> {
    let wire: WireRequest = parse_json(body)?;
    let actions = wire.actions.unwrap_or_default();
    if actions.len() > MAX_ACTIONS {
        return Err(AppError::bad_request("actions", format!("at most {MAX_ACTIONS} actions per request")));
    }
    Ok(Batch {
        user_id: UserId::try_from(wire.user_id).map_err(|e| AppError::bad_request("user_id", e))?,
        currency: Currency::try_from(wire.currency).map_err(|e| AppError::bad_request("currency", e))?,
        game: wire.game.map(short_text).transpose().map_err(|e| AppError::bad_request("game", e))?,
        game_id: wire.game_id.map(short_text).transpose().map_err(|e| AppError::bad_request("game_id", e))?,
        actions: actions
            .into_iter()
            .enumerate()
            .map(|(i, action)| action.validate(i))
            .collect::<Result<_, _>>()?,
    })
}

impl WireAction {
    fn validate(self, index: usize) -> Result<Action, AppError> {
        let field = |name: &str| format!("actions[{index}].{name}");
        let amount = |amount: Option<i64>| -> Result<Amount, AppError> {
            let amount = amount.ok_or_else(|| AppError::bad_request(&field("amount"), "is required"))?;
            Amount::try_from(amount).map_err(|e| AppError::bad_request(&field("amount"), e))
        };
        let no_original = |original: Option<Uuid>| match original {
            Some(_) => {
                Err(AppError::bad_request(&field("original_action_id"), "is only allowed on a rollback"))
            }
            None => Ok(()),
        };
        let id = self.action_id;
        match self.action.as_str() {
            "bet" => {
                no_original(self.original_action_id)?;
                Ok(Action::Bet { id, amount: amount(self.amount)? })
            }
            "win" => {
                no_original(self.original_action_id)?;
                Ok(Action::Win { id, amount: amount(self.amount)? })
            }
            "rollback" => {
                if self.amount.is_some() {
                    return Err(AppError::bad_request(&field("amount"), "must be absent on a rollback"));
                }
                let original = self.original_action_id.ok_or_else(|| {
                    AppError::bad_request(&field("original_action_id"), "is required on a rollback")
                })?;
                Ok(Action::Rollback { id, original })
            }
            other => Err(AppError::bad_request(
                &field("action"),
                format!("unknown action {other:?}, expected bet, win or rollback"),
            )),
        }
    }
}

/// `{"balance": …}`: the answer to a request without actions.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // only these keys: tells the two answers apart in the API document
#[schema(example = json!({"balance": 74322001}))]
pub struct BalanceResponse {
    pub balance: i64,
}

/// The answer to a request with actions: exactly these keys.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"game_id": "1761032910488163506", "transactions": [
    {"action_id": "7c8affbf-53fd-4fcc-b1ca-18118c5dd287", "tx_id": "0193a4c2-7b1e-7c4a-9f00-3b2a1d0e9c11"}],
    "balance": 74322051}))]
pub struct ProcessResponse {
    /// The request's, or null when it had none.
    pub game_id: Option<String>,
    /// One per action, in request order.
    pub transactions: Vec<TransactionRef>,
    pub balance: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionRef {
    pub action_id: Uuid,
    pub tx_id: Uuid,
}

/// What `/v1/process` answers: the balance alone, or the batch's transactions too.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProcessAnswer {
    Balance(BalanceResponse),
    Processed(ProcessResponse),
}

impl ProcessResponse {
    pub fn new(game_id: Option<String>, receipt: Receipt) -> ProcessResponse {
        ProcessResponse {
            game_id,
            transactions: receipt
                .transactions
                .into_iter()
                .map(|(action_id, tx_id)| TransactionRef { action_id, tx_id })
                .collect(),
            balance: receipt.balance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(body: &str) -> String {
        match parse_batch(body.as_bytes()) {
            Err(AppError::BadRequest(message)) => message,
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    const HEAD: &str = r#""user_id":"u1","currency":"USD""#;

    #[test]
    fn parses_a_mixed_batch_in_order() {
        let body = format!(
            r#"{{{HEAD},"game_id":"g","actions":[
                {{"action":"bet","action_id":"7c8affbf-53fd-4fcc-b1ca-18118c5dd287","amount":100}},
                {{"action":"rollback","action_id":"c9a9c3a7-e9e8-4f5a-9fdf-1d8a377d1b8f",
                  "original_action_id":"7c8affbf-53fd-4fcc-b1ca-18118c5dd287"}}]}}"#
        );
        let batch = parse_batch(body.as_bytes()).unwrap();
        assert_eq!(batch.actions.len(), 2);
        assert!(matches!(batch.actions[0], Action::Bet { .. }));
        assert!(matches!(batch.actions[1], Action::Rollback { .. }));
    }

    #[test]
    fn amounts_must_be_plain_non_negative_integers_in_range() {
        for amount in ["100.5", "1e3", "100.0", "-1", "1000000000000001", "99999999999999999999", "\"100\""] {
            let body = format!(
                r#"{{{HEAD},"actions":[{{"action":"bet","action_id":"7c8affbf-53fd-4fcc-b1ca-18118c5dd287","amount":{amount}}}]}}"#
            );
            let message = rejection(&body);
            assert!(message.starts_with("actions[0].amount"), "{amount}: {message}");
        }
    }

    #[test]
    fn rejections_name_the_field() {
        assert!(rejection(r#"{"currency":"USD"}"#).contains("user_id"));
        assert!(rejection(&format!(
            r#"{{{HEAD},"actions":[{{"action":"bet","action_id":"nope","amount":1}}]}}"#
        ))
        .starts_with("actions[0].action_id"));
        assert!(rejection(&format!(
            r#"{{{HEAD},"actions":[{{"action":"spin","action_id":"7c8affbf-53fd-4fcc-b1ca-18118c5dd287","amount":1}}]}}"#
        ))
        .starts_with("actions[0].action"));
        assert!(rejection(r#"{"user_id":"u","currency":"usd"}"#).starts_with("currency"));
        assert!(rejection(&format!(r#"{{{HEAD},"game_id":"{}"}}"#, "x".repeat(256))).starts_with("game_id"));
        assert!(rejection(&format!(r#"{{{HEAD},"finished":"yes"}}"#)).starts_with("finished"));
        assert!(rejection("{not json").starts_with("body"));
        assert!(rejection(&format!("{{{HEAD}}} trailing")).starts_with("body"));
        assert!(rejection("").starts_with("body"));
    }
}
