//! The IPT network. Filled in by its own issue.
