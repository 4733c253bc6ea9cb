//! Command-line tools that ship with the service: load generation.

pub mod bench;
