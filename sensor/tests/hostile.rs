//! Hostile input through the whole replay path: the fixtures with frames truncated, bytes
//! flipped and garbage spliced in, deterministically (fixed-seed xorshift). The sensor must not
//! panic, must account for every frame, and must keep memory bounded (small flow table here,
//! so eviction is exercised too).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};

use sensor::capture::pcap_file::PcapFile;
use sensor::config::Config;
use sensor::pipeline::{replay, EveTarget, ReplayOptions};
use sensor_testkit::gen::pcap_writer::PcapWriter;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join("testdata-pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// Writes a mutated copy of `src` (same link type) and returns its path.
fn mutate(src: &Path, dir: &Path, seed: u64) -> PathBuf {
    let mut rng = XorShift(seed | 1);
    let f = PcapFile::open(src).unwrap();
    let frames: Vec<_> = f.frames().collect();
    let linktype = frames.first().map_or(1, |fr| fr.linktype as u32);
    let out = dir.join(format!(
        "{}-{seed}.pcap",
        src.file_stem().unwrap().to_string_lossy()
    ));
    let mut w = PcapWriter::new(File::create(&out).unwrap(), linktype, 65535, true).unwrap();
    for fr in &frames {
        let mut data = fr.data.to_vec();
        match rng.below(6) {
            0 => data.truncate(rng.below(data.len() + 1)),
            1 | 2 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(data.len());
                    if let Some(b) = data.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            3 => {
                let at = rng.below(data.len());
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, junk);
            }
            _ => {}
        }
        // Also replay some frames twice and with time going backwards.
        let ts = fr.ts.saturating_sub(rng.below(3) as u64 * 1_000_000_000);
        w.write_packet(ts, &data).unwrap();
        if rng.below(10) == 0 {
            w.write_packet(ts, &data).unwrap();
        }
    }
    w.into_inner().unwrap();
    out
}

#[test]
fn mutated_fixtures_never_panic_and_every_frame_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, src) in fixtures().iter().enumerate() {
        for round in 0..20u64 {
            files.push(mutate(src, dir.path(), 1 + i as u64 * 1000 + round));
        }
    }
    let mut config = Config::default();
    config.sensor.workers = 2;
    config.sensor.pin_cores = false;
    config.flow.max_flows = 16;
    config.dpi.max_buffer = 1024;
    config.decode.frag_max_datagrams = 4;
    let opts = ReplayOptions {
        files: files.clone(),
        config,
        eve: EveTarget::File(dir.path().join("eve.json")),
        speed: None,
        no_decode: false,
        progress: false,
    };
    let summary = replay(&opts).expect("replay of mutated fixtures");
    assert!(summary.reader.frames > 5_000, "{summary}");
    assert_eq!(summary.accounted(), summary.reader.frames, "{summary}");
    // Every line is valid JSON.
    let text = std::fs::read_to_string(dir.path().join("eve.json")).unwrap();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert_eq!(
        text.lines().count() as u64,
        summary.eve.flows + summary.eve.events
    );
}
