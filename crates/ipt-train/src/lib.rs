//! IPT training. Filled in by its own issue.
