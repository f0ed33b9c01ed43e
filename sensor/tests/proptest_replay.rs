//! Property test over the whole replay path: random mutations of the fixture captures (bytes
//! flipped or set, frames truncated, extended with random bytes, duplicated or dropped), chosen
//! and shrunk by `proptest`, replayed with small limits. For every case: no panic, every frame
//! accounted for, and memory bounded: flows never outnumber frames, events stay within a fixed
//! multiple of frames, and every EVE record stays under a size bound (answers, header values and
//! buffers are capped). `hostile.rs` runs a fixed set of such mutations; this one searches.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sensor::capture::pcap_file::PcapFile;
use sensor::config::Config;
use sensor::pipeline::{replay, EveTarget, ReplayOptions};
use sensor_testkit::gen::pcap_writer::PcapWriter;

/// Longest EVE line any input may produce (a TLS event with fingerprints and a certificate, a
/// DNS response with the capped answer list, an HTTP event with capped header values).
const MAX_EVE_LINE: usize = 32 * 1024;
/// Most events per frame (a DNS message: at most 64 questions).
const MAX_EVENTS_PER_FRAME: u64 = 64;

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join("testdata-pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// One edit of one frame.
#[derive(Clone, Debug)]
enum Edit {
    Set { pos: usize, val: u8 },
    Flip { pos: usize, bit: u8 },
    Truncate { len: usize },
    Append { bytes: Vec<u8> },
    Duplicate,
    Drop,
}

fn edit() -> impl Strategy<Value = (usize, Edit)> {
    let e = prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(pos, val)| Edit::Set { pos, val }),
        4 => (any::<usize>(), 0u8..8).prop_map(|(pos, bit)| Edit::Flip { pos, bit }),
        2 => any::<usize>().prop_map(|len| Edit::Truncate { len }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Edit::Append { bytes }),
        1 => Just(Edit::Duplicate),
        1 => Just(Edit::Drop),
    ];
    (any::<usize>(), e)
}

/// Writes `src` with `edits` applied (frame index modulo the frame count) and returns its path.
fn mutate(src: &Path, dir: &Path, edits: &[(usize, Edit)]) -> PathBuf {
    let f = PcapFile::open(src).unwrap();
    let frames: Vec<_> = f.frames().collect();
    let linktype = frames.first().map_or(1, |fr| fr.linktype as u32);
    let mut out: Vec<(u64, Vec<u8>, usize)> = frames
        .iter()
        .map(|fr| (fr.ts, fr.data.to_vec(), 1))
        .collect();
    let n = out.len().max(1);
    for (i, e) in edits {
        let Some((_, data, copies)) = out.get_mut(i % n) else {
            continue;
        };
        let len = data.len().max(1);
        match e {
            Edit::Set { pos, val } => {
                if let Some(b) = data.get_mut(pos % len) {
                    *b = *val;
                }
            }
            Edit::Flip { pos, bit } => {
                if let Some(b) = data.get_mut(pos % len) {
                    *b ^= 1 << bit;
                }
            }
            Edit::Truncate { len: l } => data.truncate(l % (len + 1)),
            Edit::Append { bytes } => data.extend_from_slice(bytes),
            Edit::Duplicate => *copies += 1,
            Edit::Drop => *copies = 0,
        }
    }
    let path = dir.join("mutated.pcap");
    let mut w = PcapWriter::new(File::create(&path).unwrap(), linktype, 65535, true).unwrap();
    for (ts, data, copies) in &out {
        for _ in 0..*copies {
            w.write_packet(*ts, data).unwrap();
        }
    }
    w.into_inner().unwrap();
    path
}

proptest! {
    // 48 small captures (under 100 frames each): a few seconds in release mode.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_replay_without_panic_with_every_frame_accounted_and_bounded_output(
        which in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..48),
        workers in 1usize..3,
    ) {
        let files = fixtures();
        let src = &files[which % files.len()];
        let dir = tempfile::tempdir().unwrap();
        let path = mutate(src, dir.path(), &edits);
        let mut config = Config::default();
        config.sensor.workers = workers;
        config.sensor.pin_cores = false;
        config.flow.max_flows = 8;
        config.dpi.max_buffer = 2048;
        let eve = dir.path().join("eve.json");
        let opts = ReplayOptions {
            files: vec![path],
            config,
            eve: EveTarget::File(eve.clone()),
            speed: None,
            no_decode: false,
            progress: false,
        };
        let summary = replay(&opts).expect("replay");
        prop_assert_eq!(summary.accounted(), summary.reader.frames, "{}", summary);
        prop_assert!(summary.flows.created <= summary.reader.frames);
        prop_assert_eq!(summary.flows.exported_total(), summary.flows.created);
        let text = std::fs::read_to_string(&eve).unwrap();
        let mut lines = 0u64;
        for line in text.lines() {
            lines += 1;
            prop_assert!(line.len() <= MAX_EVE_LINE, "EVE line of {} bytes", line.len());
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        prop_assert_eq!(lines, summary.eve.flows + summary.eve.events);
        prop_assert!(summary.eve.events <= MAX_EVENTS_PER_FRAME * summary.reader.frames.max(1));
    }
}
