//! Live capture's threads: the per-queue capture thread (`live`), which decodes and dispatches
//! frames from its AF_XDP socket as the replay reader does, and the control thread that owns the
//! XDP maps (`control`). The devices they drive (pcap files, the XDP program, AF_XDP sockets,
//! the blocklist) are the `sensor-capture` crate, re-exported here under their usual paths.

pub mod control;
pub mod live;

pub use sensor_capture::{afxdp, blocklist, pcap_file, xdp};
