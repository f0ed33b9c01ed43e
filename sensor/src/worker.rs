//! A DPI worker: pops packets from its SPSC ring, runs them through its own flow table (and so
//! DPI), and sends finished records in batches to the exporter.
//!
//! The worker owns its flow table outright: no locks, no shared state on the packet path. It
//! never does I/O; a full export channel is the exporter's back-pressure (replay waits on it,
//! which is what makes replay lossless).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::capture::pcap_file::PcapFile;
use crate::dispatch::{Backoff, Msg, PacketDesc, Payload};
use crate::dpi::DpiConfig;
use crate::export::Record;
use crate::flow::{FlowConfig, FlowStats, FlowTable};

/// Records per batch sent to the exporter.
const BATCH: usize = 512;
/// Most messages taken from the ring before its slots are handed back to the source.
const RX_CHUNK: usize = 256;
/// A partial batch waits at most this long (wall time) before it goes to the exporter. Only
/// when records are sent, not which, depends on it: output stays deterministic. Sending after
/// every tick instead made tiny batches in sparse captures (a tick per packet) and woke the
/// exporter tens of thousands of times.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

pub struct Worker {
    files: Arc<Vec<PcapFile>>,
    table: FlowTable,
    out: Vec<Record>,
    export: Sender<Vec<Record>>,
    /// Emptied batches coming back from the exporter, so the packet path does not allocate them.
    recycled: Receiver<Vec<Record>>,
    last_send: Instant,
}

impl Worker {
    pub fn new(
        files: Arc<Vec<PcapFile>>,
        flow: FlowConfig,
        dpi: DpiConfig,
        export: Sender<Vec<Record>>,
        recycled: Receiver<Vec<Record>>,
    ) -> Worker {
        Worker {
            files,
            table: FlowTable::new(flow, dpi),
            out: Vec::with_capacity(BATCH),
            export,
            recycled,
            last_send: Instant::now(),
        }
    }

    /// Consumes its ring until the producer is gone and the ring is empty, then exports every
    /// remaining flow.
    pub fn run(mut self, mut rx: rtrb::Consumer<Msg>) -> FlowStats {
        let mut backoff = Backoff::new();
        loop {
            let ready = rx.slots();
            if ready == 0 {
                if rx.is_abandoned() && rx.slots() == 0 {
                    break;
                }
                self.send_if_due();
                backoff.wait();
                continue;
            }
            backoff.reset();
            // Handle a chunk in place (no copy out of the ring), then release its slots to the
            // source in one go.
            let Ok(chunk) = rx.read_chunk(ready.min(RX_CHUNK)) else {
                continue;
            };
            let (first, second) = chunk.as_slices();
            for msg in first.iter().chain(second) {
                self.handle(msg);
            }
            chunk.commit_all();
        }
        self.table.flush(&mut self.out);
        self.send();
        self.table.stats.clone()
    }

    #[inline]
    fn handle(&mut self, msg: &Msg) {
        match msg {
            Msg::Packet(desc) => {
                let payload = payload_of(&self.files, desc);
                self.table.packet(desc, payload, &mut self.out);
                if self.out.len() >= BATCH {
                    self.send();
                }
            }
            Msg::Tick(ts) => {
                self.table.advance(*ts, &mut self.out);
                if self.out.len() >= BATCH {
                    self.send();
                } else {
                    self.send_if_due();
                }
            }
        }
    }

    /// Sends a partial batch that has waited for [`FLUSH_INTERVAL`].
    fn send_if_due(&mut self) {
        if !self.out.is_empty() && self.last_send.elapsed() >= FLUSH_INTERVAL {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.last_send = Instant::now();
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.out, fresh);
        // The exporter only goes away when the whole pipeline is shutting down.
        let _ = self.export.send(batch);
    }
}

/// The L4 payload of a packet, wherever it lies; empty if the descriptor points outside.
fn payload_of<'a>(files: &'a [PcapFile], desc: &'a PacketDesc) -> &'a [u8] {
    let len = desc.info.payload_len as usize;
    match &desc.payload {
        Payload::Mapped { file, off } => files
            .get(*file as usize)
            .and_then(|f| f.bytes().get(*off..off.saturating_add(len)))
            .unwrap_or(&[]),
        Payload::Owned(buf) => {
            let off = desc.info.payload_off as usize;
            buf.get(off..off.saturating_add(len)).unwrap_or(&[])
        }
    }
}
