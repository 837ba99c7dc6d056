//! IPT losses. Filled in by its own issue.
