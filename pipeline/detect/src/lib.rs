//! `pipeline-detect`: the detection engine of the pipeline. EVE records in, EVE alerts out,
//! the same offline (`pipeline detect --eve`) and online (the NATS consumer builds on
//! [`Engine`]).
//!
//! Data flow: [`record`] (EVE line -> typed record) -> [`engine`] (every rule, event time and
//! watermark) -> [`rules`] (one module per kind: `match`, `threshold`, `sequence`, `baseline`;
//! expressions in [`expr`], threat intel in [`intel`]) -> [`alert`] (EVE alert lines).
//! [`offline`] is the `pipeline detect --eve` and `pipeline check-rules` commands; [`online`]
//! is `pipeline detect --config`, the durable JetStream consumer with its alert sinks.

pub mod alert;
pub mod engine;
pub mod expr;
pub mod intel;
pub mod lines;
pub mod offline;
pub mod online;
pub mod record;
pub mod rules;
pub mod time;

pub use alert::Alert;
pub use engine::{Engine, EngineConfig};
pub use intel::IntelSet;
pub use record::Record;
pub use rules::RuleSet;
