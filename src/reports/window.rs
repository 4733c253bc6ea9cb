//! A report window `[from, to)` and how it splits into whole rollup hours and
//! the partial hours at its edges, which are read from the raw ledger.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::floor_time;
use crate::error::AppError;

/// A validated half-open window over processing time.
///
/// `[from, hours_from)` and `[hours_to, to)` are the raw edges;
/// `[hours_from, hours_to)` is covered by whole hour buckets. When the window
/// holds no whole hour, `hours_from == hours_to == to` and the whole window is
/// one raw edge.
///
/// `[days_from, days_to)` are the whole (UTC) days among those hours, which
/// the daily summary serves once sealed. When there is none,
/// `days_from == days_to == hours_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub hours_from: DateTime<Utc>,
    pub hours_to: DateTime<Utc>,
    pub days_from: DateTime<Utc>,
    pub days_to: DateTime<Utc>,
}

impl Window {
    /// Parses `from` and `to` (RFC 3339; `from` strictly before `to`). Every
    /// time RFC 3339 can write, years 0000 to 9999, is a valid end.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Window, AppError> {
        let from = parse_time("from", from)?;
        let to = parse_time("to", to)?;
        if from >= to {
            return Err(AppError::bad_request("to", "must be later than from"));
        }
        Ok(Window::new(from, to))
    }

    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
        // The database keeps microseconds. Rounding both ends up keeps the
        // half-open test exact: t >= from ⇔ t >= ceil(from) for whole-µs t.
        let (from, to) = (ceil_micros(from), ceil_micros(to));
        let (hours_from, hours_to) = inner(from, to, TimeDelta::hours(1));
        let (days_from, days_to) = inner(hours_from, hours_to, TimeDelta::days(1));
        Window { from, to, hours_from, hours_to, days_from, days_to }
    }
}

/// The whole units of `unit` inside `[from, to)`, or `(to, to)` if none.
fn inner(from: DateTime<Utc>, to: DateTime<Utc>, unit: TimeDelta) -> (DateTime<Utc>, DateTime<Utc>) {
    let floor = |at: DateTime<Utc>| floor_time(at, unit);
    let first = if floor(from) == from { from } else { floor(from) + unit };
    let last = floor(to);
    if first < last {
        (first, last)
    } else {
        (to, to)
    }
}

fn parse_time(field: &str, text: Option<&str>) -> Result<DateTime<Utc>, AppError> {
    let text = text.ok_or_else(|| AppError::bad_request(field, "is required"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| AppError::bad_request(field, "must be an RFC 3339 time such as 2026-11-23T10:00:00Z"))
}

fn ceil_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let rest = at.timestamp_subsec_nanos() % 1000;
    if rest == 0 {
        at
    } else {
        at + TimeDelta::nanoseconds(i64::from(1000 - rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_long_window_is_whole_hours_between_two_raw_edges() {
        let w = Window::parse(Some("2026-11-01T10:15:00Z"), Some("2026-11-03T08:30:00Z")).unwrap();
        assert_eq!(w.hours_from, at("2026-11-01T11:00:00Z"));
        assert_eq!(w.hours_to, at("2026-11-03T08:00:00Z"));
    }

    #[test]
    fn whole_days_are_found_inside_the_whole_hours() {
        let w = Window::parse(Some("2026-11-01T10:15:00Z"), Some("2026-11-04T08:30:00Z")).unwrap();
        assert_eq!((w.days_from, w.days_to), (at("2026-11-02T00:00:00Z"), at("2026-11-04T00:00:00Z")));
        let w = Window::parse(Some("2026-11-01T10:15:00Z"), Some("2026-11-02T08:30:00Z")).unwrap();
        assert_eq!((w.days_from, w.days_to), (w.hours_to, w.hours_to));
    }

    #[test]
    fn an_hour_aligned_window_has_empty_edges() {
        let w = Window::parse(Some("2026-11-01T10:00:00Z"), Some("2026-11-01T12:00:00Z")).unwrap();
        assert_eq!((w.hours_from, w.hours_to), (w.from, w.to));
    }

    #[test]
    fn a_window_without_a_whole_hour_is_read_raw() {
        let w = Window::parse(Some("2026-11-01T10:15:00Z"), Some("2026-11-01T11:45:00Z")).unwrap();
        assert_eq!((w.hours_from, w.hours_to), (w.to, w.to));
    }

    #[test]
    fn offsets_are_converted_to_utc_and_nanoseconds_rounded_up() {
        let w =
            Window::parse(Some("2026-11-01T12:00:00.0000001+02:00"), Some("2026-11-01T11:00:00Z")).unwrap();
        assert_eq!(w.from, at("2026-11-01T10:00:00.000001Z"));
    }

    #[test]
    fn windows_reach_from_year_0000_to_year_9999() {
        for (from, to) in [
            ("2026-11-27T00:00:00Z", "2262-04-12T00:00:00Z"),
            ("0000-01-01T00:00:00Z", "2026-11-27T00:00:00Z"),
            ("1600-01-01T00:30:00Z", "9999-12-31T23:59:59.999999999Z"),
        ] {
            let w = Window::parse(Some(from), Some(to)).unwrap();
            assert!(w.from <= w.hours_from && w.hours_from <= w.hours_to && w.hours_to <= w.to, "{w:?}");
            assert!(w.hours_from <= w.days_from && w.days_to <= w.hours_to, "{w:?}");
        }
        let w = Window::parse(Some("2262-04-11T23:30:00Z"), Some("2262-04-12T02:00:00Z")).unwrap();
        assert_eq!((w.hours_from, w.hours_to), (at("2262-04-12T00:00:00Z"), at("2262-04-12T02:00:00Z")));
    }

    #[test]
    fn bad_or_reversed_times_name_the_field() {
        let message = |from, to| match Window::parse(from, to) {
            Err(AppError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(message(None, Some("2026-11-01T10:00:00Z")).starts_with("from"));
        assert!(message(Some("yesterday"), Some("2026-11-01T10:00:00Z")).starts_with("from"));
        assert!(message(Some("2026-11-01T10:00:00Z"), Some("2026-11-01")).starts_with("to"));
        assert!(message(Some("2026-11-01T10:00:00Z"), Some("2026-11-01T10:00:00Z")).starts_with("to"));
    }
}
