//! Commands that fill a wallet with data and exercise it, for load tests,
//! benchmarks and end-to-end checks of the reports.
//!
//! - `seed`: many funded players in one statement.
//! - `simulate`: a provider playing rounds over signed HTTP, reconciled
//!   against the RTP reports.
//! - `seed_ledger`: months of history written in bulk, for report benchmarks.
//! - `bench`: the load generator (signed provider traffic, HDR latencies,
//!   money conservation).

pub mod bench;
pub mod seed;
pub mod seed_ledger;
pub mod simulate;
