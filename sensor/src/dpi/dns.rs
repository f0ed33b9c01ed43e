//! placeholder, being written
use super::AppEvent;
use crate::time::Ts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message truncated")]
    Truncated,
    #[error("malformed message")]
    Malformed,
}

/// Parses one DNS message (UDP payload, or one TCP message without its 2-byte length prefix)
/// and pushes one [`AppEvent::Dns`] per question.
pub fn parse_message(msg: &[u8], ts: Ts, out: &mut Vec<AppEvent>) -> Result<(), DnsError> {
    let _ = (msg, ts, out);
    Err(DnsError::Malformed)
}
