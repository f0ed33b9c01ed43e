//! The fan-out's NATS encoder: every record's EVE line as a message on
//! `sensor.<sensor_id>.<event_type>`, with a message id JetStream deduplicates by
//! (`<sensor_id>:<flow_id>:flow`, `:<event_index>` or `:start`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::push_message;
use crate::lane::{Due, Encoder, Pending, Prepared};
use crate::sink::Batch;
use crate::Record;
use sensor_proto::dpi::AppEvent;

pub struct NatsEncoder {
    max_msgs: usize,
    max_age: Duration,
    pending: Pending,
    subject: String,
    id: String,
}

impl NatsEncoder {
    pub fn new(max_msgs: usize, max_age: Duration) -> NatsEncoder {
        NatsEncoder {
            max_msgs,
            max_age,
            pending: Pending::default(),
            subject: String::new(),
            id: String::new(),
        }
    }
}

impl Encoder for NatsEncoder {
    fn wants_json(&self) -> bool {
        true
    }

    fn wants_rows(&self) -> bool {
        false
    }

    fn wants_flow_starts(&self) -> bool {
        true
    }

    fn encode(&mut self, p: &Prepared<'_>) {
        let (event_type, flow_id) = match p.record {
            Record::Flow(f) => ("flow", f.meta.flow_id),
            Record::FlowStart(f) => ("flow_start", f.meta.flow_id),
            Record::Event(e) => (
                match e.event {
                    AppEvent::Tls(_) => "tls",
                    AppEvent::Http(_) => "http",
                    AppEvent::Dns(_) => "dns",
                    AppEvent::Quic(_) => "quic",
                },
                e.meta.flow_id,
            ),
        };
        let sensor = p.sensor_id;
        self.subject.clear();
        let _ = write!(self.subject, "sensor.{sensor}.{event_type}");
        self.id.clear();
        let _ = match (p.record, p.index) {
            (Record::FlowStart(_), _) => write!(self.id, "{sensor}:{flow_id}:start"),
            (_, Some(i)) => write!(self.id, "{sensor}:{flow_id}:{i}"),
            (_, None) => write!(self.id, "{sensor}:{flow_id}:flow"),
        };
        push_message(self.pending.start_row(), &self.subject, &self.id, p.json);
    }

    fn take(&mut self, due: Due, out: &mut Vec<Batch>) {
        let p = &self.pending;
        if due.takes(p.rows as usize, self.max_msgs, p.since, self.max_age) {
            out.extend(self.pending.take());
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.pending.since
    }

    fn max_age(&self) -> Duration {
        self.max_age
    }
}
