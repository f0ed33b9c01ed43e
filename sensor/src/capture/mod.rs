//! Capture sources: where frames come from. Today the pcap/pcapng replay reader; the live AF_XDP
//! path joins it here. A source yields frames with their capture timestamp and link type and
//! does not decode them.

pub mod pcap_file;
