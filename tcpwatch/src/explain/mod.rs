//! Explanations: rules over per-flow history and namespace samples turn events
//! into findings (cause, evidence, fix).
pub mod application;
pub mod cause;
pub mod drops;
pub mod engine;
pub mod finding;
pub mod history;
pub mod infer;
pub mod namespaces;
pub mod pairing;
pub mod rule;
pub mod rulebook;
pub mod rules;
pub mod summary;
#[cfg(test)]
pub mod testkit;
pub mod thresholds;
pub mod wording;
