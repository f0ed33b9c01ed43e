//! Capture sources: where frames come from. The pcap/pcapng replay reader, and the live path:
//! the XDP program and its loader (`xdp`), AF_XDP sockets (`afxdp`), the per-queue capture
//! thread (`live`) and the control thread that owns the XDP maps (`control`), with the
//! blocklist it keeps (`blocklist`). A source yields
//! frames with their capture timestamp; the live capture thread also decodes and dispatches,
//! as the replay reader does.

pub mod afxdp;
pub mod blocklist;
pub mod control;
pub mod live;
pub mod pcap_file;
pub mod xdp;
