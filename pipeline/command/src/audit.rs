//! The audit trail's record: every action taken or refused, by `pipeline respond` (its
//! decisions, dry runs, notifications, tags) and by sensors (a command applied or rejected),
//! with the alert that caused it. Published on stream `ACTIONS` (`actions.<source>`) and
//! written to ClickHouse table `actions`, where `id` makes a re-delivered record count once.

use serde::{Deserialize, Serialize};

/// What became of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A command was signed and published (respond's side).
    Requested,
    /// The sensor applied it to its blocklist (or a notify/tag succeeded).
    Applied,
    /// Refused: by a sensor's verifier, or by respond's guard rails (protected network, rate).
    Rejected,
    /// The command had expired when the sensor read it.
    Expired,
    /// Tried and failed (a map update, a notification after its retries).
    Failed,
    /// Dry-run mode: logged and recorded, not done.
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Requested => "requested",
            Outcome::Applied => "applied",
            Outcome::Rejected => "rejected",
            Outcome::Expired => "expired",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
        }
    }
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Unique per record (e.g. `<command id>:<sensor_id>:applied`).
    pub id: String,
    /// Event time, Unix milliseconds.
    pub time_ms: u64,
    /// Who wrote it: `respond` or `sensor`; `console:<user>` for what respond did on an
    /// operator's request from the console.
    pub source: String,
    /// The sensor concerned, when one is.
    #[serde(default)]
    pub sensor_id: String,
    /// `block`, `unblock`, `notify`, `tag`.
    pub kind: String,
    /// The CIDR, URL or host acted on.
    pub target: String,
    pub outcome: Outcome,
    /// Why (the rejection cause, the guard rail, the HTTP status...).
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub alert_id: String,
    #[serde(default)]
    pub command_id: String,
    #[serde(default)]
    pub playbook: String,
}
