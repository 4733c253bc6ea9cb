//! Keyset paging shared by every listing: `limit` and `cursor` as a caller
//! sends them, the opaque cursor of listings newest first by (time, number),
//! and the cut of a `limit + 1` fetch into a page and the next cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::storable_time;
use crate::error::{AppError, AppResult};

/// `limit` (default 100, at most 1000) and `cursor`, shared by every paginated listing.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> AppResult<i64> {
        match self.limit.as_deref() {
            None => Ok(100),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| AppError::bad_request("limit", "must be an integer from 1 to 1000")),
        }
    }

    /// The cursor of a listing newest first by (time, number), if one was given.
    pub fn history_cursor(&self) -> AppResult<Option<HistoryCursor>> {
        self.cursor
            .as_deref()
            .map(|c| {
                HistoryCursor::decode(c)
                    .ok_or_else(|| AppError::bad_request("cursor", "is not a cursor this service issued"))
            })
            .transpose()
    }
}

/// Position in a listing newest first by (time, number): a player's history
/// by (created_at, seq), the audit trail by (at, seq), of the last row
/// returned. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    created_at: DateTime<Utc>,
    seq: i64,
}

impl HistoryCursor {
    pub fn new(at: DateTime<Utc>, seq: i64) -> HistoryCursor {
        HistoryCursor { created_at: at, seq }
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.created_at
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at.timestamp_micros(), self.seq))
    }

    pub fn decode(text: &str) -> Option<HistoryCursor> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let (micros, seq) = raw.split_once(':')?;
        Some(HistoryCursor {
            // Only times the database can compare with: anything else was
            // not issued here.
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)
                .filter(|&t| storable_time(t))?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Cuts a `limit + 1` fetch to `limit` rows, with a cursor when more remain.
pub fn page<T, C>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(&cursor_of);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_a_forged_one_is_refused() {
        let cursor = HistoryCursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            seq: 42,
        };
        assert_eq!(HistoryCursor::decode(&cursor.encode()), Some(cursor));
        for forged in ["-300000000000000000:1", "300000000000000000:1", "1:x", "1", "\0:1"] {
            assert_eq!(HistoryCursor::decode(&URL_SAFE_NO_PAD.encode(forged)), None, "{forged}");
        }
        assert_eq!(HistoryCursor::decode("not base64!"), None);
    }
}
