//! Data synthesis for IPT. Filled in by its own issue.
