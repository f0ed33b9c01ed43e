//! (temporary crate root of the online branch until the engine is merged)
pub mod online;
pub mod time;
