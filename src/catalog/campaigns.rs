//! Bonus campaigns: their terms, validated field by field, and their rows.
//!
//! A campaign is parsed once, at the edge, into [`Terms`]; every problem is a
//! 400 naming its field. The store functions return `sqlx::Error` or `None`
//! for the caller to map; [`find`] is what the deposit and grant code reads
//! the terms with, inside its own transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::PgConnection;

use super::games::is_category;
use crate::domain::MAX_AMOUNT;
use crate::error::{AppError, AppResult};

/// How a campaign grants its bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKind {
    /// Granted with a deposit that names the campaign's code.
    DepositMatch,
    /// Granted by staff (`POST /v1/players/{user_id}/bonuses`).
    Manual,
}

impl CampaignKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignKind::DepositMatch => "deposit_match",
            CampaignKind::Manual => "manual",
        }
    }

    fn parse(text: &str) -> Option<CampaignKind> {
        [CampaignKind::DepositMatch, CampaignKind::Manual].into_iter().find(|k| k.as_str() == text)
    }
}

/// What a campaign grants and on which terms: everything but its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Terms {
    pub kind: CampaignKind,
    /// Percent of the deposit granted (0..=1000); 0 for a `manual` campaign unless set.
    pub match_percent: i32,
    /// The most one grant gives, in minor units.
    pub max_bonus: i64,
    /// The smallest deposit that earns the bonus, in minor units.
    pub min_deposit: i64,
    /// `required` = `wagering_multiplier * granted` (0..=1000).
    pub wagering_multiplier: i32,
    /// How much of a stake counts towards wagering, in percent, per game category.
    #[schema(example = json!({"slots": 100, "table": 10, "other": 0}))]
    pub contributions: BTreeMap<String, i16>,
    /// The largest stake accepted while the bonus is active; `null`: no cap.
    pub max_bet: Option<i64>,
    /// Converted balance is capped at `granted * max_conversion_multiplier`; `null`: no cap.
    pub max_conversion_multiplier: Option<i32>,
    /// Days from the grant until an unfinished bonus expires (1..=3650).
    pub valid_days: i32,
    /// Only an active campaign grants.
    pub active: bool,
}

/// A stored campaign, as the API shows it and [`find`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Campaign {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub operator: i16,
    #[schema(example = "WELCOME100")]
    pub code: String,
    #[serde(flatten)]
    pub terms: Terms,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Campaign {
    /// The campaign as a document a merge patch applies to: code and terms.
    pub fn document(&self) -> Value {
        let mut document = serde_json::to_value(&self.terms).expect("terms serialise");
        document["code"] = Value::String(self.code.clone());
        document
    }
}

/// Whether `code` is a campaign code: `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Fields the service sets: accepted in a body (a campaign read back and
/// sent again carries them) and ignored.
const READ_ONLY: [&str; 2] = ["created_at", "updated_at"];

/// Parses a new campaign: `code` and its terms.
pub fn parse_new(body: Value) -> AppResult<(String, Terms)> {
    let Value::Object(mut fields) = body else {
        return Err(AppError::bad_request("body", "must be a JSON object"));
    };
    let code = match fields.remove("code") {
        Some(Value::String(code)) if is_code(&code) => code,
        Some(_) => return Err(AppError::bad_request("code", "must match ^[A-Za-z0-9_-]{1,64}$")),
        None => return Err(AppError::bad_request("code", "is required")),
    };
    Ok((code, Terms::parse(fields)?))
}

/// Applies a JSON merge patch (RFC 7396) to `campaign`'s terms. `code` and
/// `kind` may appear only with their current values.
pub fn patched(campaign: &Campaign, patch: Value) -> AppResult<Terms> {
    let Value::Object(mut patch) = patch else {
        return Err(AppError::bad_request("body", "a merge patch of a campaign is a JSON object"));
    };
    for (field, current) in [("code", campaign.code.as_str()), ("kind", campaign.terms.kind.as_str())] {
        match patch.remove(field) {
            None => {}
            Some(Value::String(same)) if same == current => {}
            Some(_) => return Err(AppError::bad_request(field, "cannot be changed")),
        }
    }
    let mut document = campaign.document();
    document.as_object_mut().expect("a campaign document is an object").remove("code");
    json_patch::merge(&mut document, &Value::Object(patch));
    let Value::Object(fields) = document else { unreachable!("merging objects gives an object") };
    Terms::parse(fields)
}

impl Terms {
    /// Validates the terms of a campaign, filling the defaults of the fields
    /// left out (docs/API.md §10): `match_percent` 0 for `manual`,
    /// `min_deposit` 0, `max_bet` and `max_conversion_multiplier` none,
    /// `active` true. A `null` is the same as leaving a field out.
    pub fn parse(mut fields: Map<String, Value>) -> AppResult<Terms> {
        for field in READ_ONLY {
            fields.remove(field);
        }
        let mut take = |field: &str| fields.remove(field).filter(|value| !value.is_null());
        let kind = match take("kind") {
            Some(Value::String(kind)) => CampaignKind::parse(&kind),
            None => return Err(AppError::bad_request("kind", "is required")),
            Some(_) => None,
        }
        .ok_or_else(|| AppError::bad_request("kind", "must be deposit_match or manual"))?;
        let match_percent = match (take("match_percent"), kind) {
            (None, CampaignKind::DepositMatch) => {
                return Err(AppError::bad_request(
                    "match_percent",
                    "is required for a deposit_match campaign",
                ))
            }
            (None, CampaignKind::Manual) => 0,
            (Some(value), _) => small("match_percent", &value, 0, 1000)?,
        };
        let max_bonus = money("max_bonus", take("max_bonus"), 0)?.ok_or_else(|| required("max_bonus"))?;
        let min_deposit = money("min_deposit", take("min_deposit"), 0)?.unwrap_or(0);
        let wagering_multiplier = take("wagering_multiplier")
            .map(|value| small("wagering_multiplier", &value, 0, 1000))
            .transpose()?
            .ok_or_else(|| required("wagering_multiplier"))?;
        let contributions = contributions(take("contributions"))?;
        let max_bet = money("max_bet", take("max_bet"), 1)?;
        let max_conversion_multiplier = take("max_conversion_multiplier")
            .map(|value| small("max_conversion_multiplier", &value, 0, 1000))
            .transpose()?;
        let valid_days = take("valid_days")
            .map(|value| small("valid_days", &value, 1, 3650))
            .transpose()?
            .ok_or_else(|| required("valid_days"))?;
        let active = match take("active") {
            None => true,
            Some(Value::Bool(active)) => active,
            Some(_) => return Err(AppError::bad_request("active", "must be true or false")),
        };
        if let Some(unknown) = fields.keys().next() {
            return Err(AppError::bad_request(unknown, "is not a field of a campaign"));
        }
        Ok(Terms {
            kind,
            match_percent,
            max_bonus,
            min_deposit,
            wagering_multiplier,
            contributions,
            max_bet,
            max_conversion_multiplier,
            valid_days,
            active,
        })
    }
}

fn required(field: &str) -> AppError {
    AppError::bad_request(field, "is required")
}

/// A whole number in `min..=max`: no fraction, no exponent.
fn small(field: &str, value: &Value, min: i32, max: i32) -> AppResult<i32> {
    value
        .as_i64()
        .filter(|n| (i64::from(min)..=i64::from(max)).contains(n))
        .map(|n| n as i32)
        .ok_or_else(|| AppError::bad_request(field, format!("must be a whole number from {min} to {max}")))
}

/// An amount of money in minor units, `min..=10^15`, if given.
fn money(field: &str, value: Option<Value>, min: i64) -> AppResult<Option<i64>> {
    value
        .map(|value| {
            value.as_i64().filter(|n| (min..=MAX_AMOUNT).contains(n)).ok_or_else(|| {
                AppError::bad_request(
                    field,
                    format!(
                        "must be an amount in minor units ({min} ..= 10^15), without fraction or exponent"
                    ),
                )
            })
        })
        .transpose()
}

/// `{"<category>": 0..=100, …}`; required.
fn contributions(value: Option<Value>) -> AppResult<BTreeMap<String, i16>> {
    let Some(value) = value else { return Err(required("contributions")) };
    let Value::Object(weights) = value else {
        return Err(AppError::bad_request(
            "contributions",
            "must be an object of game categories to percents",
        ));
    };
    weights
        .into_iter()
        .map(|(category, weight)| {
            let field = format!("contributions.{category}");
            if !is_category(&category) {
                return Err(AppError::bad_request(&field, "a category matches ^[a-z0-9_]{1,32}$"));
            }
            let weight = small(&field, &weight, 0, 100)?;
            Ok((category, weight as i16))
        })
        .collect()
}

/// A campaign row as read.
struct Row {
    id: i64,
    operator_id: i16,
    code: String,
    kind: String,
    match_percent: i32,
    max_bonus: i64,
    min_deposit: i64,
    wagering_multiplier: i32,
    contributions: Json<BTreeMap<String, i16>>,
    max_bet: Option<i64>,
    max_conversion_multiplier: Option<i32>,
    valid_days: i32,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Campaign {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Campaign, sqlx::Error> {
        let kind = CampaignKind::parse(&row.kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("campaign kind {:?}", row.kind).into()))?;
        Ok(Campaign {
            id: row.id,
            operator: row.operator_id,
            code: row.code,
            terms: Terms {
                kind,
                match_percent: row.match_percent,
                max_bonus: row.max_bonus,
                min_deposit: row.min_deposit,
                wagering_multiplier: row.wagering_multiplier,
                contributions: row.contributions.0,
                max_bet: row.max_bet,
                max_conversion_multiplier: row.max_conversion_multiplier,
                valid_days: row.valid_days,
                active: row.active,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Campaign `code` of `operator` with all its terms, or `None`. Reads
/// without locking: a grant copies the terms it is made with.
pub async fn find(
    conn: &mut PgConnection,
    operator: i16,
    code: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"SELECT id, operator_id, code, kind, match_percent, max_bonus, min_deposit, wagering_multiplier,
                  contributions AS "contributions: Json<BTreeMap<String, i16>>", max_bet,
                  max_conversion_multiplier, valid_days, active, created_at, updated_at
           FROM bonus_campaigns WHERE operator_id = $1 AND code = $2"#,
        operator,
        code,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Like [`find`], locking the row for a change.
pub async fn lock(
    conn: &mut PgConnection,
    operator: i16,
    code: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"SELECT id, operator_id, code, kind, match_percent, max_bonus, min_deposit, wagering_multiplier,
                  contributions AS "contributions: Json<BTreeMap<String, i16>>", max_bet,
                  max_conversion_multiplier, valid_days, active, created_at, updated_at
           FROM bonus_campaigns WHERE operator_id = $1 AND code = $2 FOR UPDATE"#,
        operator,
        code,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Every campaign of `operator`, oldest first.
pub async fn list(conn: &mut PgConnection, operator: i16) -> Result<Vec<Campaign>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id, operator_id, code, kind, match_percent, max_bonus, min_deposit, wagering_multiplier,
                  contributions AS "contributions: Json<BTreeMap<String, i16>>", max_bet,
                  max_conversion_multiplier, valid_days, active, created_at, updated_at
           FROM bonus_campaigns WHERE operator_id = $1 ORDER BY id"#,
        operator,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Campaign::try_from).collect()
}

/// Creates campaign `code` of `operator`; `None` when the operator has one
/// by that code already.
pub async fn create(
    conn: &mut PgConnection,
    operator: i16,
    code: &str,
    terms: &Terms,
) -> Result<Option<Campaign>, sqlx::Error> {
    let created = sqlx::query!(
        r#"INSERT INTO bonus_campaigns (operator_id, code, kind, match_percent, max_bonus, min_deposit,
                                        wagering_multiplier, contributions, max_bet, max_conversion_multiplier,
                                        valid_days, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (operator_id, code) DO NOTHING
           RETURNING id, created_at, updated_at"#,
        operator,
        code,
        terms.kind.as_str(),
        terms.match_percent,
        terms.max_bonus,
        terms.min_deposit,
        terms.wagering_multiplier,
        Json(&terms.contributions) as _,
        terms.max_bet,
        terms.max_conversion_multiplier,
        terms.valid_days,
        terms.active,
    )
    .fetch_optional(conn)
    .await?;
    Ok(created.map(|row| Campaign {
        id: row.id,
        operator,
        code: code.to_owned(),
        terms: terms.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

/// Stores new terms for a campaign locked by [`lock`]; `kind` never changes.
pub async fn update(
    conn: &mut PgConnection,
    campaign: &Campaign,
    terms: &Terms,
) -> Result<Campaign, sqlx::Error> {
    let updated_at = sqlx::query_scalar!(
        r#"UPDATE bonus_campaigns
           SET match_percent = $2, max_bonus = $3, min_deposit = $4, wagering_multiplier = $5,
               contributions = $6, max_bet = $7, max_conversion_multiplier = $8, valid_days = $9,
               active = $10, updated_at = now()
           WHERE id = $1
           RETURNING updated_at"#,
        campaign.id,
        terms.match_percent,
        terms.max_bonus,
        terms.min_deposit,
        terms.wagering_multiplier,
        Json(&terms.contributions) as _,
        terms.max_bet,
        terms.max_conversion_multiplier,
        terms.valid_days,
        terms.active,
    )
    .fetch_one(conn)
    .await?;
    Ok(Campaign { terms: terms.clone(), updated_at, ..campaign.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn welcome() -> Value {
        json!({"code": "WELCOME100", "kind": "deposit_match", "match_percent": 100, "max_bonus": 10000,
               "min_deposit": 1000, "wagering_multiplier": 30,
               "contributions": {"slots": 100, "table": 10, "other": 0}, "max_bet": 500,
               "max_conversion_multiplier": 5, "valid_days": 30, "active": true})
    }

    fn problem(body: Value) -> String {
        parse_new(body).expect_err("refused").to_string()
    }

    #[test]
    fn the_contract_example_parses_with_every_value_kept() {
        let (code, terms) = parse_new(welcome()).unwrap();
        assert_eq!(code, "WELCOME100");
        assert_eq!(terms.kind, CampaignKind::DepositMatch);
        assert_eq!((terms.match_percent, terms.max_bonus, terms.min_deposit), (100, 10000, 1000));
        assert_eq!(terms.contributions["table"], 10);
        assert_eq!(
            (terms.max_bet, terms.max_conversion_multiplier, terms.valid_days),
            (Some(500), Some(5), 30)
        );
    }

    #[test]
    fn omitted_optional_fields_take_their_defaults() {
        let (_, terms) = parse_new(json!({"code": "m", "kind": "manual", "max_bonus": 0,
            "wagering_multiplier": 0, "contributions": {}, "valid_days": 1}))
        .unwrap();
        assert_eq!((terms.match_percent, terms.min_deposit, terms.max_bet), (0, 0, None));
        assert_eq!((terms.max_conversion_multiplier, terms.active), (None, true));
    }

    #[test]
    fn every_bad_field_is_named() {
        let with = |field: &str, value: Value| {
            let mut body = welcome();
            if value == json!("<absent>") {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value;
            }
            body
        };
        let cases = [
            ("code", json!("has space")),
            ("code", json!("x".repeat(65))),
            ("code", json!("<absent>")),
            ("kind", json!("cashback")),
            ("kind", json!("<absent>")),
            ("match_percent", json!(1001)),
            ("match_percent", json!(-1)),
            ("match_percent", json!(50.5)),
            ("match_percent", json!("<absent>")),
            ("max_bonus", json!(-1)),
            ("max_bonus", json!(1_000_000_000_000_001_i64)),
            ("max_bonus", json!(100.0)),
            ("max_bonus", json!("100")),
            ("max_bonus", json!("<absent>")),
            ("min_deposit", json!(-5)),
            ("wagering_multiplier", json!(1001)),
            ("wagering_multiplier", json!("<absent>")),
            ("contributions", json!([1])),
            ("contributions", json!("<absent>")),
            ("contributions.slots", json!({"slots": 101})),
            ("contributions.slots", json!({"slots": 1.5})),
            ("contributions.Slots", json!({"Slots": 10})),
            ("max_bet", json!(0)),
            ("max_conversion_multiplier", json!(1001)),
            ("valid_days", json!(0)),
            ("valid_days", json!(3651)),
            ("valid_days", json!("<absent>")),
            ("active", json!("yes")),
            ("bonus", json!(1)),
        ];
        for (field, value) in cases {
            let top = field.split('.').next().unwrap();
            let body = with(top, value.clone());
            let said = problem(body);
            assert!(said.starts_with(&format!("{field}: ")), "{field} = {value} → {said}");
        }
        let exponent: Value =
            serde_json::from_str(r#"{"code":"x","kind":"manual","max_bonus":1e3}"#).unwrap();
        assert!(problem(exponent).starts_with("max_bonus: "));
    }

    fn stored() -> Campaign {
        let (code, terms) = parse_new(welcome()).unwrap();
        Campaign { id: 1, operator: 1, code, terms, created_at: Utc::now(), updated_at: Utc::now() }
    }

    #[test]
    fn a_merge_patch_changes_the_terms_it_names_and_null_restores_a_default() {
        let campaign = stored();
        let terms =
            patched(&campaign, json!({"active": false, "max_bet": null, "contributions": {"slots": 50}}))
                .unwrap();
        assert!(!terms.active);
        assert_eq!(terms.max_bet, None);
        assert_eq!(
            terms.contributions,
            BTreeMap::from([("slots".into(), 50), ("table".into(), 10), ("other".into(), 0)])
        );
        assert_eq!(terms.max_bonus, campaign.terms.max_bonus);
        let same = patched(&campaign, json!({"code": "WELCOME100", "kind": "deposit_match"})).unwrap();
        assert_eq!(same, campaign.terms);
    }

    #[test]
    fn a_patch_cannot_change_code_or_kind_or_drop_a_required_term() {
        let campaign = stored();
        let said = |patch| patched(&campaign, patch).unwrap_err().to_string();
        assert!(said(json!({"code": "OTHER"})).starts_with("code: cannot be changed"));
        assert!(said(json!({"kind": "manual"})).starts_with("kind: cannot be changed"));
        assert!(said(json!({"max_bonus": null})).starts_with("max_bonus: is required"));
        assert!(said(json!([])).starts_with("body: "));
    }
}
