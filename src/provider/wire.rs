//! The provider request and response as they look on the wire, and their
//! validation into a [`Batch`]. Every rejection names the offending field.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{short_text, Amount, Currency, UserId};
use crate::error::AppError;
use crate::http::parse_json;
use crate::ledger::rules::Receipt;
use crate::ledger::{Action, Batch};

/// At most this many actions in one request.
pub const MAX_ACTIONS: usize = 100;

#[derive(Deserialize)]
struct WireRequest {
    user_id: String,
    currency: String,
    game: Option<String>,
    game_id: Option<String>,
    #[allow(dead_code)] // accepted and validated as a bool; carries no money rule
    finished: Option<bool>,
    actions: Option<Vec<WireAction>>,
}

#[derive(Deserialize)]
struct WireAction {
    action: String,
    action_id: Uuid,
    amount: Option<i64>,
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
#[derive(Serialize)]
pub struct BalanceResponse {
    pub balance: i64,
}

/// The answer to a request with actions: exactly these keys.
#[derive(Serialize)]
pub struct ProcessResponse {
    pub game_id: Option<String>,
    pub transactions: Vec<TransactionRef>,
    pub balance: i64,
}

#[derive(Serialize)]
pub struct TransactionRef {
    pub action_id: Uuid,
    pub tx_id: Uuid,
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
