//! The IPT network. Filled in by its own issue.

pub mod chop;
pub mod convert;
pub mod device;
pub mod ensemble;
