//! Where the sensor's frames come from: the pcap/pcapng replay reader (`pcap_file`), and for
//! live capture the XDP program with its loader and maps (`xdp`), the blocklist it enforces
//! (`blocklist`) and AF_XDP sockets (`afxdp`). The threads that drive them (the per-queue
//! capture thread, the control thread) are the `sensor` binary's live orchestration.

pub mod afxdp;
pub mod blocklist;
pub mod pcap_file;
pub mod xdp;
