//! The fan-out's ClickHouse encoder: flow records and HTTP and DNS events as RowBinary rows of
//! `flows`, `http_requests` and `dns_queries`, one pending batch per table.

use std::time::{Duration, Instant};

use super::batch::Builder;
use super::rows::{self, Table};
use crate::lane::{Due, Encoder, Prepared};
use crate::sink::Batch;
use crate::Record;
use sensor_proto::dpi::AppEvent;

pub struct ClickHouseEncoder {
    max_rows: usize,
    max_age: Duration,
    /// In [`Table::ALL`] order.
    tables: [Builder; 3],
}

impl ClickHouseEncoder {
    pub fn new(max_rows: usize, max_age: Duration) -> ClickHouseEncoder {
        ClickHouseEncoder {
            max_rows,
            max_age,
            tables: Table::ALL.map(Builder::new),
        }
    }
}

impl Encoder for ClickHouseEncoder {
    fn wants_json(&self) -> bool {
        false
    }

    fn wants_rows(&self) -> bool {
        true
    }

    fn wants_flow_starts(&self) -> bool {
        false
    }

    fn encode(&mut self, p: &Prepared<'_>) {
        let [flows, http, dns] = &mut self.tables;
        let buf = match p.record {
            Record::Flow(f) => {
                let buf = flows.start_row();
                rows::encode_flow(buf, p.sensor_id, f, p.summary);
                buf
            }
            Record::Event(e) => {
                let i = p.index.unwrap_or(0);
                match &e.event {
                    AppEvent::Http(h) => {
                        let buf = http.start_row();
                        rows::encode_http(buf, p.sensor_id, &e.meta, i, h);
                        buf
                    }
                    AppEvent::Dns(d) => {
                        let buf = dns.start_row();
                        rows::encode_dns(buf, p.sensor_id, &e.meta, i, d);
                        buf
                    }
                    AppEvent::Tls(_) | AppEvent::Quic(_) => return,
                }
            }
            Record::FlowStart(_) => return,
        };
        buf.extend_from_slice(p.enrich_row);
    }

    fn take(&mut self, due: Due, out: &mut Vec<Batch>) {
        for t in &mut self.tables {
            if due.takes(t.rows() as usize, self.max_rows, t.since, self.max_age) {
                out.extend(t.take());
            }
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.tables.iter().filter_map(|t| t.since).min()
    }

    fn max_age(&self) -> Duration {
        self.max_age
    }
}
