//! The operator document: what a brand is, as configuration.
//!
//! A document is parsed once, at the edge, into [`Document`] and validated
//! whole; every problem names its field (`rules.min_age: …`). What is stored
//! is the normalised document with every default filled in, so what a reader
//! gets back is exactly what the service acts on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{is_country, storable, Currency, Flag};
use crate::error::AppError;

/// The code of the operator every deployment has.
pub const DEFAULT_CODE: &str = "default";

/// Whether `code` is a valid operator code: `^[a-z0-9_-]{1,64}$`.
pub fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Flags that are on unless an operator turns them off; any other is off when absent.
const ON_UNLESS_SET: [&str; 3] = ["casino", "bonuses", "player_registration"];

/// An operator's configuration, as stored (without code and version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub name: String,
    pub currencies: Vec<String>,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub theme: BTreeMap<String, String>,
    #[serde(default)]
    pub features: BTreeMap<String, Flag>,
    #[serde(default)]
    pub rules: Rules,
}

fn utc() -> String {
    "UTC".into()
}

/// The rules an operator's players live by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    pub min_age: u8,
    pub limit_increase_delay_hours: u32,
    pub session_idle_minutes: u32,
    pub session_max_hours: u32,
    pub login_max_failures: u32,
    /// `None` until set: the defaults then depend on the operator (`default`
    /// allows everything at every tier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kyc_tiers: Option<BTreeMap<String, KycTier>>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            min_age: 18,
            limit_increase_delay_hours: 24,
            session_idle_minutes: 30,
            session_max_hours: 24,
            login_max_failures: 5,
            kyc_tiers: None,
        }
    }
}

/// What a player of one KYC tier may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycTier {
    pub deposit: bool,
    pub play: bool,
    pub withdraw: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_lifetime_max: Option<i64>,
}

fn tier_of(deposit: bool, play: bool, withdraw: bool, deposit_lifetime_max: Option<i64>) -> KycTier {
    KycTier { deposit, play, withdraw, deposit_lifetime_max }
}

/// The KYC tiers an operator gets when its document sets none.
pub fn default_kyc_tiers(code: &str) -> BTreeMap<String, KycTier> {
    let tiers = if code == DEFAULT_CODE {
        [tier_of(true, true, true, None), tier_of(true, true, true, None), tier_of(true, true, true, None)]
    } else {
        [
            tier_of(false, false, false, None),
            tier_of(true, true, false, Some(200_000)),
            tier_of(true, true, true, None),
        ]
    };
    tiers.into_iter().enumerate().map(|(n, t)| (n.to_string(), t)).collect()
}

impl Document {
    /// Parses and validates a document for operator `code`, filling defaults.
    pub fn parse(code: &str, value: Value) -> Result<Document, AppError> {
        let mut document: Document = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            let problem = error.into_inner().to_string();
            // A missing field is reported at its parent: name the field itself.
            let missing = problem.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
            let field = match (path.as_str(), missing) {
                (".", Some(name)) => name.to_string(),
                (_, Some(name)) => format!("{path}.{name}"),
                (".", None) => "body".to_string(),
                (_, None) => path,
            };
            AppError::bad_request(&field, problem)
        })?;
        document.normalise(code)?;
        Ok(document)
    }

    fn normalise(&mut self, code: &str) -> Result<(), AppError> {
        let bad = |field: &str, problem: &str| AppError::bad_request(field, problem);
        if self.name.trim().is_empty() || self.name.chars().count() > 200 || storable(&self.name).is_err() {
            return Err(bad("name", "must be 1 to 200 characters"));
        }
        // `default` predates documents: it serves any currency until it lists some.
        if self.currencies.is_empty() && code != DEFAULT_CODE {
            return Err(bad("currencies", "must list at least one currency"));
        }
        for (n, currency) in self.currencies.iter().enumerate() {
            if Currency::try_from(currency.clone()).is_err() {
                return Err(bad(&format!("currencies[{n}]"), "must be 3 to 10 characters A-Z or 0-9"));
            }
            if self.currencies[..n].contains(currency) {
                return Err(bad(&format!("currencies[{n}]"), "is listed twice"));
            }
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(bad("timezone", "must be an IANA time zone name such as Europe/London"));
        }
        for (n, domain) in self.domains.iter_mut().enumerate() {
            *domain = domain.to_ascii_lowercase();
            if !is_host_name(domain) {
                return Err(bad(&format!("domains[{n}]"), "must be a host name without scheme or port"));
            }
        }
        let mut sorted = self.domains.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("domains", "lists a domain twice"));
        }
        for (name, value) in &self.theme {
            if !is_css_name(name) {
                return Err(bad(
                    &format!("theme.{name}"),
                    "a theme key is a CSS variable name: a-z, 0-9 and -, 1 to 64",
                ));
            }
            if value.chars().count() > 100
                || value.chars().any(|c| "{};<>\\\"\0".contains(c) || c.is_control())
            {
                return Err(bad(
                    &format!("theme.{name}"),
                    "a theme value is a short CSS value (at most 100 characters, no ; { } < > \\ or quotes)",
                ));
            }
        }
        for name in self.features.keys() {
            if !is_code(name) {
                return Err(bad(&format!("features.{name}"), "a flag name is a-z, 0-9, _ and -, 1 to 64"));
            }
        }
        self.rules.validate(code)
    }

    /// Flag `name` for a player of `country`.
    pub fn flag(&self, name: &str, country: Option<&str>) -> bool {
        match self.features.get(name) {
            Some(flag) => flag.is_on(country),
            None => ON_UNLESS_SET.contains(&name),
        }
    }

    /// Every flag evaluated for `country`, the always-known ones included.
    pub fn flags_for(&self, country: Option<&str>) -> BTreeMap<String, bool> {
        let names = ON_UNLESS_SET.iter().map(|n| n.to_string()).chain(self.features.keys().cloned());
        names.map(|name| (name.clone(), self.flag(&name, country))).collect()
    }

    /// The time zone calendar periods follow (limits, age). A validated
    /// document's zone parses; UTC stands in for one that does not.
    pub fn zone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Tz::UTC)
    }

    /// The `casino` flag as the hot path checks it.
    pub fn casino(&self) -> Flag {
        self.features.get("casino").cloned().unwrap_or(Flag::Everywhere(true))
    }
}

impl Rules {
    /// What a player of KYC tier `tier` (0, 1 or 2) may do. A parsed document
    /// defines every tier; anything else is allowed nothing.
    pub fn kyc_tier(&self, tier: i16) -> KycTier {
        let nothing = tier_of(false, false, false, Some(0));
        self.kyc_tiers.as_ref().and_then(|tiers| tiers.get(&tier.to_string())).cloned().unwrap_or(nothing)
    }

    /// The `play` of each tier, as the hot path checks it.
    pub fn play_by_tier(&self) -> [bool; 3] {
        [0, 1, 2].map(|tier| self.kyc_tier(tier).play)
    }

    fn validate(&mut self, code: &str) -> Result<(), AppError> {
        let bad = |field: &str, problem: &str| AppError::bad_request(&format!("rules.{field}"), problem);
        if !(1..=99).contains(&self.min_age) {
            return Err(bad("min_age", "must be 1 to 99"));
        }
        if self.limit_increase_delay_hours > 24 * 366 {
            return Err(bad("limit_increase_delay_hours", "must be at most 8784 (a year)"));
        }
        if !(1..=24 * 60).contains(&self.session_idle_minutes) {
            return Err(bad("session_idle_minutes", "must be 1 to 1440"));
        }
        if !(1..=24 * 30).contains(&self.session_max_hours) {
            return Err(bad("session_max_hours", "must be 1 to 720"));
        }
        if !(1..=100).contains(&self.login_max_failures) {
            return Err(bad("login_max_failures", "must be 1 to 100"));
        }
        let tiers = self.kyc_tiers.get_or_insert_with(|| default_kyc_tiers(code));
        if tiers.keys().map(String::as_str).ne(["0", "1", "2"]) {
            return Err(bad("kyc_tiers", "must set exactly the tiers \"0\", \"1\" and \"2\""));
        }
        for (n, tier) in tiers.iter() {
            if tier.deposit_lifetime_max.is_some_and(|max| !(0..=crate::domain::MAX_AMOUNT).contains(&max)) {
                return Err(bad(
                    &format!("kyc_tiers.{n}.deposit_lifetime_max"),
                    "must be 0 to 10^18 minor units",
                ));
            }
        }
        Ok(())
    }
}

fn is_host_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_css_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a country given by a caller (`?country=`).
pub fn country(value: &str) -> Result<String, AppError> {
    let upper = value.to_ascii_uppercase();
    if is_country(&upper) {
        Ok(upper)
    } else {
        Err(AppError::bad_request("country", "must be an ISO 3166-1 alpha-2 code such as GB"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Document, String> {
        Document::parse("bluestar", value).map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_example_parses_and_keeps_its_values() {
        let doc =
            parse(json!({"name": "Bluestar Casino", "currencies": ["GBP"], "timezone": "Europe/London",
            "domains": ["Bluestar.example"], "theme": {"primary": "#1a3c8f", "radius": "8px"},
            "features": {"casino": true, "live_betting": {"default": true, "countries": {"GB": false}}},
            "rules": {"min_age": 18, "login_max_failures": 5}}))
            .unwrap();
        assert_eq!(doc.domains, ["bluestar.example"]);
        assert!(!doc.flag("live_betting", Some("GB")));
        assert!(doc.flag("live_betting", Some("SE")));
        assert!(doc.flag("live_betting", None));
        assert!(doc.flag("bonuses", Some("GB")), "bonuses is on unless set");
        assert!(!doc.flag("anything_else", Some("GB")), "other flags are off when absent");
        assert_eq!(doc.rules.play_by_tier(), [false, true, true]);
        assert_eq!(doc.rules.kyc_tier(1), tier_of(true, true, false, Some(200_000)));
        assert_eq!(doc.rules.kyc_tier(3), tier_of(false, false, false, Some(0)), "no such tier");
        assert_eq!(doc.rules.kyc_tiers.unwrap()["0"], tier_of(false, false, false, None));
    }

    #[test]
    fn every_problem_names_its_field() {
        let base = || json!({"name": "B", "currencies": ["GBP"]});
        let cases = [
            (json!({"name": "B"}), "currencies"),
            (json!({"name": "B", "currencies": []}), "currencies"),
            (json!({"name": "B", "currencies": ["gbp"]}), "currencies[0]"),
            (json!({"name": "B", "currencies": ["GBP", "GBP"]}), "currencies[1]"),
            (json!({"name": "B", "currencies": ["GBP"], "timezone": "Mars/Olympus"}), "timezone"),
            (json!({"name": "B", "currencies": ["GBP"], "domains": ["https://x.example"]}), "domains[0]"),
            (json!({"name": "B", "currencies": ["GBP"], "theme": {"primary": "red; }"}}), "theme.primary"),
            (json!({"name": "B", "currencies": ["GBP"], "features": {"casino": "yes"}}), "features.casino"),
            (
                json!({"name": "B", "currencies": ["GBP"], "features": {"casino": {"default": true, "countries": {"gb": false}}}}),
                "features.casino",
            ),
            (json!({"name": "B", "currencies": ["GBP"], "rules": {"min_age": 0}}), "rules.min_age"),
            (
                json!({"name": "B", "currencies": ["GBP"], "rules": {"kyc_tiers": {"0": {"deposit": true, "play": true, "withdraw": true}}}}),
                "rules.kyc_tiers",
            ),
            (json!({"name": "B", "currencies": ["GBP"], "colour": "red"}), "colour"),
        ];
        assert!(parse(base()).is_ok());
        for (value, field) in cases {
            let problem = parse(value.clone()).expect_err(&value.to_string());
            assert!(problem.starts_with(&format!("{field}: ")), "{value} → {problem}, expected {field}");
        }
    }

    #[test]
    fn default_serves_any_currency_and_allows_every_tier() {
        let doc = Document::parse(DEFAULT_CODE, json!({"name": "Default", "currencies": []})).unwrap();
        assert!(doc.rules.kyc_tiers.unwrap().values().all(|t| t.deposit && t.play && t.withdraw));
    }

    #[test]
    fn codes_follow_the_contract_pattern() {
        assert!(is_code("bluestar") && is_code("a_b-9") && is_code(&"x".repeat(64)));
        assert!(!is_code("") && !is_code("Blue") && !is_code("a b") && !is_code(&"x".repeat(65)));
    }
}
