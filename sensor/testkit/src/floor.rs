//! The live benchmark's floors, measured on the same interface as the sensor: the XDP program
//! counting and dropping every frame (what this machine's kernel path can take at all), and a
//! bare AF_XDP copy-mode receive loop that touches nothing (what user space can take at all).
//! `floor --iface IF --mode xdp-drop|afxdp` (and `xdp-pass`, which the benchmark puts
//! under tcpdump when the generator redirects frames into the veth).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use sensor::capture::afxdp::{BindMode, XskOptions, XskSocket};
use sensor::capture::xdp::{counter, AttachMode, Behaviour, CaptureFilter, XdpProgram};
use sensor::config::LiveSection;

/// Which floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorMode {
    /// XDP counts and drops every frame.
    XdpDrop,
    /// XDP redirects to an AF_XDP socket (copy mode) whose loop only counts frames.
    Afxdp,
    /// XDP passes every frame to the kernel's stack (counted as `no_socket`). Not a floor: a
    /// veth takes redirected frames (`pcapgen send --method xdp`) only with an XDP program on
    /// its receiving end, so an AF_PACKET capture there needs this one beside it.
    XdpPass,
}

/// Runs until `duration` or SIGINT/SIGTERM; returns a one-line report
/// (`floor: mode=... seen=N received=N socket_dropped=N seconds=S`).
pub fn run(
    iface: &str,
    mode: FloorMode,
    queue: u32,
    live: &LiveSection,
    duration: Duration,
) -> Result<String> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("cannot install the signal handlers")?;
    }
    let behaviour = match mode {
        FloorMode::XdpDrop => Behaviour::CountAndDrop,
        FloorMode::Afxdp | FloorMode::XdpPass => Behaviour::Capture { bypass: false },
    };
    let mut xdp = XdpProgram::load(
        iface,
        AttachMode::Auto,
        &CaptureFilter::default(),
        behaviour,
    )?;
    let mut sock = match mode {
        FloorMode::Afxdp => {
            // The sensor's own socket sizes (`live.*`), so both receive with the same buffering.
            let opts = XskOptions {
                rx_ring: live.rx_ring,
                fill_ring: live.fill_ring,
                frame_size: live.frame_size,
                bind: BindMode::Copy,
                busy_poll: false,
                huge_pages: live.huge_pages,
            };
            let s = XskSocket::open(iface, queue, &opts)?;
            xdp.register_socket(queue, s.fd())?;
            Some(s)
        }
        FloorMode::XdpDrop | FloorMode::XdpPass => None,
    };
    let maps = xdp.take_maps()?;
    eprintln!("floor ready on {iface}");
    let started = Instant::now();
    let mut received = 0u64;
    while !term.load(Ordering::Relaxed) && started.elapsed() < duration {
        match sock.as_mut() {
            Some(s) => received += s.recv_batch(50, |_| {}) as u64,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    xdp.detach();
    let mut dropped = 0;
    if let Some(s) = sock.as_mut() {
        loop {
            let n = s.recv_batch(0, |_| {}) as u64;
            if n == 0 {
                break;
            }
            received += n;
        }
        dropped = s.stats().lost();
    }
    Ok(format!(
        "floor: mode={mode:?} seen={} received={received} socket_dropped={dropped} seconds={:.3}",
        maps.counter(counter::SEEN),
        started.elapsed().as_secs_f64()
    ))
}
