//! What the fields of a registration (and a KYC note) must be. Each check
//! names its field in the 400 it answers; the checks that depend on the
//! operator (its currencies, its `min_age`) answer the contract's codes.

use chrono::{Datelike, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::{storable, Currency, UserId};
use crate::error::{AppError, AppResult};
use crate::ledger::rules::Refusal;
use crate::operators::document::Document;

/// The email as given (trimmed) and its key: lower case, what uniqueness and
/// login compare. An email is `local@domain` with one `@`: 3 to 254
/// characters, no whitespace or control characters, a local part of 1 to 64
/// characters, and a domain of non-empty dot-separated labels, at least two.
pub fn email(raw: &str) -> AppResult<(String, String)> {
    let bad = || AppError::bad_request("email", "must be an email address such as ann@example.com");
    let email = raw.trim();
    if !(3..=254).contains(&email.chars().count())
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
        || storable(email).is_err()
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let labels_ok = domain.split('.').all(|label| !label.is_empty() && !label.contains('@'));
    if local.is_empty() || local.chars().count() > 64 || !domain.contains('.') || !labels_ok {
        return Err(bad());
    }
    Ok((email.to_owned(), email.to_lowercase()))
}

/// 10 to 128 characters, kept exactly as typed (no trimming).
pub fn password(raw: String) -> AppResult<String> {
    if (10..=128).contains(&raw.chars().count()) {
        Ok(raw)
    } else {
        Err(AppError::bad_request("password", "must be 10 to 128 characters"))
    }
}

/// A well-formed currency (else 400) that the operator offers (else 422 code
/// 154). `default` lists none until configured, and then takes any.
pub fn currency(document: &Document, raw: String) -> AppResult<Currency> {
    let currency = Currency::try_from(raw).map_err(|e| AppError::bad_request("currency", e))?;
    let offered = &document.currencies;
    if !offered.is_empty() && !offered.iter().any(|c| c == currency.as_str()) {
        return Err(Refusal::CurrencyMismatch.into());
    }
    Ok(currency)
}

/// A real calendar date `YYYY-MM-DD`, not in the future and not before 1900
/// (else 400), of someone at least the operator's `min_age` today in the
/// operator's time zone (else 422 code 130).
pub fn date_of_birth(raw: &str, document: &Document) -> AppResult<NaiveDate> {
    let bad = |problem| AppError::bad_request("date_of_birth", problem);
    let date = (raw.len() == 10)
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| bad("must be a calendar date YYYY-MM-DD"))?;
    let zone: chrono_tz::Tz = document.timezone.parse().map_err(|_| {
        AppError::internal(anyhow::anyhow!("operator time zone {} does not parse", document.timezone))
    })?;
    let today = Utc::now().with_timezone(&zone).date_naive();
    if date > today {
        return Err(bad("must not be in the future"));
    }
    if date.year() < 1900 {
        return Err(bad("must be 1900-01-01 or later"));
    }
    let age = today.years_since(date).unwrap_or(0);
    if age < u32::from(document.rules.min_age) {
        return Err(AppError::UnderAge(document.rules.min_age));
    }
    Ok(date)
}

/// A new player's `user_id`: random, so it tells nothing about the player or
/// how many there are.
pub fn new_user_id() -> UserId {
    UserId::try_from(Uuid::new_v4().to_string()).expect("a UUID is a valid user_id")
}

/// A KYC change's note: 1 to 1000 characters of storable text.
pub fn note(raw: String) -> AppResult<String> {
    let text = raw.trim();
    if !(1..=1000).contains(&text.chars().count()) || storable(text).is_err() {
        return Err(AppError::bad_request("note", "must be 1 to 1000 characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(min_age: u8) -> Document {
        let value = json!({"name": "B", "currencies": ["GBP", "EUR"], "timezone": "Europe/London",
                           "rules": {"min_age": min_age}});
        Document::parse("bluestar", value).unwrap()
    }

    #[test]
    fn emails_are_trimmed_keyed_in_lower_case_and_malformed_ones_refused() {
        assert_eq!(
            email("  Ann.Lee@Example.COM ").unwrap(),
            ("Ann.Lee@Example.COM".to_string(), "ann.lee@example.com".to_string())
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@@example.com",
            "ann@example..com",
            "an n@example.com",
            "ann@exa\u{0}mple.com",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(250)),
        ] {
            assert!(email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_10_to_128_characters_counted_as_characters() {
        assert!(password("a".repeat(9)).is_err());
        assert!(password("a".repeat(10)).is_ok());
        assert!(password("é".repeat(128)).is_ok(), "128 characters of two bytes each");
        assert!(password("a".repeat(129)).is_err());
        assert_eq!(password("  spaces kept  ".into()).unwrap(), "  spaces kept  ");
    }

    #[test]
    fn a_currency_must_be_the_operators_and_well_formed() {
        assert_eq!(currency(&document(18), "EUR".into()).unwrap().as_str(), "EUR");
        let not_offered = currency(&document(18), "USD".into()).unwrap_err();
        assert_eq!((not_offered.status().as_u16(), not_offered.code()), (422, 154));
        assert_eq!(currency(&document(18), "usd".into()).unwrap_err().status().as_u16(), 400);
    }

    #[test]
    fn birth_dates_must_be_real_past_and_old_enough() {
        let today = Utc::now().with_timezone(&chrono_tz::Europe::London).date_naive();
        let years_ago = |n: i32| today.with_year(today.year() - n).unwrap_or(today - chrono::Days::new(1));
        let text = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        assert!(date_of_birth(&text(years_ago(18)), &document(18)).is_ok(), "18 today");
        let young = date_of_birth(&text(years_ago(18) + chrono::Days::new(1)), &document(18)).unwrap_err();
        assert_eq!((young.status().as_u16(), young.code()), (422, 130), "18 tomorrow");
        assert!(date_of_birth(&text(years_ago(20)), &document(21)).is_err(), "the operator's own min_age");
        for bad in ["2001-02-30", "2001-13-01", "01-02-2001", "2001-2-3", "1899-12-31", "", "tomorrow"] {
            assert_eq!(date_of_birth(bad, &document(18)).unwrap_err().status().as_u16(), 400, "{bad}");
        }
        let tomorrow = text(today + chrono::Days::new(1));
        assert_eq!(date_of_birth(&tomorrow, &document(1)).unwrap_err().status().as_u16(), 400);
    }
}
