//! On-disk spool of one sink: batches the sink could not take, kept in order until it
//! acknowledges them.
//!
//! Layout: a directory per sink holding segment files `NNNNNNNNNNNNNNNNNNNN.seg`, appended in
//! order, each a sequence of records `[len u32 LE][crc32 u32 LE][rows u32 LE][payload]` (the
//! checksum covers rows and payload). Reading starts at the oldest segment; how far it has been
//! acknowledged is kept in `NNN.ack` beside it (a byte offset), so a sensor restart resumes
//! where the last run stopped without sending acknowledged batches again. A segment is deleted
//! once all its records are acknowledged. A record that fails its checksum (torn write at a
//! crash) ends its segment: it and anything after it in that segment are counted as corrupt.
//!
//! Rows are counted per segment (from the record headers at open, then as batches come and
//! go), so a sink can tell how many rows it leaves behind, and its summary can add up. A disk
//! that fills up before `max_bytes` (a small partition) is the same as a full spool: a record
//! that could not be written whole is cut off again, then the policy applies.
//!
//! Hand-written rather than a queue crate because what we need is small (append, read oldest,
//! ack, drop oldest segment) and its on-disk format must stay ours across versions.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record header: length, checksum, row count.
const HEADER: usize = 12;

/// Names the first and last record of a batch payload, so dropped batches can be reported.
pub type Describe = fn(&[u8]) -> Option<(String, String)>;

/// What to do when the spool is full (config `spool.full_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse new batches: the exporter stops taking records, so workers see back-pressure
    /// (replay waits; live capture counts drops).
    Block,
    /// Delete the oldest segment to make room; its rows are counted as dropped.
    DropOldest,
}

/// Counters of one spool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches and rows written to disk.
    pub spooled_batches: u64,
    pub spooled_rows: u64,
    /// Batches and rows read back and acknowledged by the sink.
    pub replayed_batches: u64,
    pub replayed_rows: u64,
    /// Rows deleted by the drop-oldest policy (or too large for the spool under it).
    pub dropped_rows: u64,
    /// Records found damaged on disk (bad checksum or truncated) and skipped.
    pub corrupt_records: u64,
    /// Rows of the segments skipped from a damaged record on.
    pub corrupt_rows: u64,
    /// Rows found in the spool at open (left by a previous run).
    pub resumed_rows: u64,
    /// Writes that failed because the disk was full.
    pub disk_full: u64,
    /// Segments deleted by the drop-oldest policy, and the first and last record they held
    /// (as the sink names its records: see [`Spool::set_describe`]).
    pub dropped_segments: u64,
    pub dropped_first: Option<String>,
    pub dropped_last: Option<String>,
    /// Largest size the spool reached, in bytes.
    pub peak_bytes: u64,
}

/// One batch read back from the spool; pass its `pos` to [`Spool::ack`] once the sink took it.
#[derive(Debug)]
pub struct Spooled {
    pub rows: u32,
    pub payload: Vec<u8>,
    pos: (u64, u64),
}

/// A spool directory. Not shared between processes; one per sink.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    policy: FullPolicy,
    describe: Option<Describe>,
    /// Segment ids on disk, oldest first.
    segments: Vec<u64>,
    /// Rows not yet acknowledged, per segment id.
    rows: BTreeMap<u64, u64>,
    /// Bytes on disk across all segments (acknowledged parts of the oldest included).
    bytes: u64,
    writer: Option<(u64, BufWriter<File>, u64)>,
    /// Read position in the oldest segment: (segment id, offset).
    read: Option<(u64, u64)>,
    pub stats: SpoolStats,
}

impl Spool {
    /// Opens (creating if needed) a spool directory and finds what a previous run left in it.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        policy: FullPolicy,
    ) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut segments = Vec::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            bytes += entry.metadata()?.len();
            segments.push(id);
        }
        segments.sort_unstable();
        let mut rows = BTreeMap::new();
        for &id in &segments {
            let seg = dir.join(format!("{id:020}.seg"));
            let from = read_ack(&dir.join(format!("{id:020}.ack")));
            rows.insert(id, count_rows(&seg, from)?);
        }
        let mut s = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(4096),
            policy,
            describe: None,
            segments,
            rows,
            bytes,
            writer: None,
            read: None,
            stats: SpoolStats::default(),
        };
        s.stats.peak_bytes = bytes;
        s.stats.resumed_rows = s.rows();
        Ok(s)
    }

    /// How to name the records of a batch when the drop-oldest policy deletes them.
    pub fn set_describe(&mut self, f: Describe) {
        self.describe = Some(f);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Rows on disk not yet acknowledged.
    pub fn rows(&self) -> u64 {
        self.rows.values().sum()
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn ack_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.ack"))
    }

    /// Appends one batch. `Ok(false)` when the spool (or its disk) is full under the `Block`
    /// policy (nothing written; the caller keeps the batch and tries again later).
    pub fn push(&mut self, rows: u32, payload: &[u8]) -> io::Result<bool> {
        let need = (HEADER + payload.len()) as u64;
        loop {
            while self.bytes + need > self.max_bytes {
                if !self.make_room(rows)? {
                    return Ok(self.policy == FullPolicy::DropOldest);
                }
            }
            match self.append(rows, payload) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                    self.stats.disk_full += 1;
                    if !self.make_room(rows)? {
                        return Ok(self.policy == FullPolicy::DropOldest);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.bytes += need;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes);
        self.stats.spooled_batches += 1;
        self.stats.spooled_rows += u64::from(rows);
        Ok(true)
    }

    /// Under `DropOldest`, deletes the oldest segment; `false` when the batch cannot be kept:
    /// under `Block`, or nothing left to delete (the batch is then counted as dropped).
    fn make_room(&mut self, rows: u32) -> io::Result<bool> {
        match self.policy {
            FullPolicy::Block => Ok(false),
            FullPolicy::DropOldest => {
                if self.drop_oldest()? {
                    Ok(true)
                } else {
                    self.stats.dropped_rows += u64::from(rows);
                    Ok(false)
                }
            }
        }
    }

    /// Writes one record at the end of the current segment (a new one when it is full). A
    /// record that could not be written whole is cut off: nothing may follow a torn record.
    fn append(&mut self, rows: u32, payload: &[u8]) -> io::Result<()> {
        let rotate = match &self.writer {
            Some((_, _, len)) => *len >= self.segment_bytes,
            None => true,
        };
        if rotate {
            if let Some((_, mut w, _)) = self.writer.take() {
                w.flush()?;
            }
            let id = self.segments.last().map_or(1, |l| l + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.seg_path(id))?;
            self.segments.push(id);
            self.rows.insert(id, 0);
            self.writer = Some((id, BufWriter::with_capacity(1 << 20, f), 0));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&rows.to_le_bytes());
        h.update(payload);
        let crc = h.finalize();
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "batch over 4 GiB"))?;
        let Some((id, w, wlen)) = &mut self.writer else {
            return Err(io::Error::other("no segment to write"));
        };
        let written = w
            .write_all(&len.to_le_bytes())
            .and_then(|()| w.write_all(&crc.to_le_bytes()))
            .and_then(|()| w.write_all(&rows.to_le_bytes()))
            .and_then(|()| w.write_all(payload))
            // Flushed per batch so a reader (and a crash) sees whole records.
            .and_then(|()| w.flush());
        if let Err(e) = written {
            if let Some((_, w, wlen)) = self.writer.take() {
                let (f, _unwritten) = w.into_parts();
                f.set_len(wlen)?;
            }
            return Err(e);
        }
        *wlen += (HEADER + payload.len()) as u64;
        *self.rows.entry(*id).or_default() += u64::from(rows);
        Ok(())
    }

    /// Whether a batch of `len` payload bytes fits now (for the `Block` policy).
    pub fn has_room(&self, len: usize) -> bool {
        self.policy == FullPolicy::DropOldest
            || self.bytes + (HEADER + len) as u64 <= self.max_bytes
    }

    /// The oldest batch not yet acknowledged, if any.
    pub fn peek(&mut self) -> io::Result<Option<Spooled>> {
        loop {
            let Some(&id) = self.segments.first() else {
                return Ok(None);
            };
            let off = match self.read {
                Some((rid, off)) if rid == id => off,
                _ => {
                    let off = read_ack(&self.ack_path(id));
                    self.read = Some((id, off));
                    off
                }
            };
            if let Some((wid, w, _)) = &mut self.writer {
                if *wid == id {
                    w.flush()?;
                }
            }
            match read_record(&self.seg_path(id), off)? {
                Record::Ok(rows, payload) => {
                    let next = off + (HEADER + payload.len()) as u64;
                    return Ok(Some(Spooled {
                        rows,
                        payload,
                        pos: (id, next),
                    }));
                }
                Record::End => {
                    self.remove_segment(id)?;
                }
                Record::Corrupt => {
                    self.stats.corrupt_records += 1;
                    if matches!(&self.writer, Some((wid, _, _)) if *wid == id) {
                        self.writer = None;
                    }
                    self.stats.corrupt_rows += self.remove_segment(id)?;
                }
            }
        }
    }

    /// Marks a batch returned by [`Spool::peek`] as taken by the sink.
    pub fn ack(&mut self, b: &Spooled) -> io::Result<()> {
        let (id, next) = b.pos;
        self.read = Some((id, next));
        if let Some(r) = self.rows.get_mut(&id) {
            *r = r.saturating_sub(u64::from(b.rows));
        }
        self.stats.replayed_batches += 1;
        self.stats.replayed_rows += u64::from(b.rows);
        // The writer flushes every record, so the file length is where its last record ends;
        // a fully acknowledged segment goes even if it was being written (the next batch
        // starts a new one), so "empty" always means "nothing left to send".
        let len = fs::metadata(self.seg_path(id))
            .map(|m| m.len())
            .unwrap_or(0);
        if next >= len {
            self.remove_segment(id)?;
        } else {
            fs::write(self.ack_path(id), next.to_string())?;
        }
        Ok(())
    }

    /// Deletes a segment; returns the rows it still held.
    fn remove_segment(&mut self, id: u64) -> io::Result<u64> {
        let path = self.seg_path(id);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if matches!(&self.writer, Some((wid, _, _)) if *wid == id) {
            self.writer = None;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = fs::remove_file(self.ack_path(id));
        self.segments.retain(|s| *s != id);
        self.bytes = self.bytes.saturating_sub(len);
        if matches!(self.read, Some((rid, _)) if rid == id) {
            self.read = None;
        }
        Ok(self.rows.remove(&id).unwrap_or(0))
    }

    /// Deletes the oldest segment, counting the rows it still held. `false` if none.
    fn drop_oldest(&mut self) -> io::Result<bool> {
        let Some(&id) = self.segments.first() else {
            return Ok(false);
        };
        let named = self.name_records(id)?;
        let rows = self.remove_segment(id)?;
        self.stats.dropped_rows += rows;
        self.stats.dropped_segments += 1;
        let Some((first, last)) = named else {
            tracing::warn!(
                "spool {}: full; dropped the oldest {rows} rows",
                self.dir.display()
            );
            return Ok(true);
        };
        tracing::warn!(
            "spool {}: full; dropped the oldest {rows} rows, records {first} to {last}",
            self.dir.display()
        );
        self.stats.dropped_first.get_or_insert(first);
        self.stats.dropped_last = Some(last);
        Ok(true)
    }
}

impl Spool {
    /// The first and last record not yet acknowledged in a segment, named by `describe`.
    fn name_records(&mut self, id: u64) -> io::Result<Option<(String, String)>> {
        let Some(describe) = self.describe else {
            return Ok(None);
        };
        if let Some((wid, w, _)) = &mut self.writer {
            if *wid == id {
                w.flush()?;
            }
        }
        let mut off = match self.read {
            Some((rid, off)) if rid == id => off,
            _ => read_ack(&self.ack_path(id)),
        };
        let (mut first, mut last) = (None, None);
        while let Record::Ok(_, payload) = read_record(&self.seg_path(id), off)? {
            if let Some((a, b)) = describe(&payload) {
                first.get_or_insert(a);
                last = Some(b);
            }
            off += (HEADER + payload.len()) as u64;
        }
        Ok(first.zip(last))
    }
}

/// The acknowledged offset of a segment (0 when none was written).
fn read_ack(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Rows of the whole records of a segment from `off` on, from their headers (a torn record at
/// the end, and what follows it, is not counted: it never was a spooled batch).
fn count_rows(path: &Path, mut off: u64) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut rows = 0;
    let mut h = [0u8; HEADER];
    while off + HEADER as u64 <= len {
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut h)?;
        let plen = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        if off + HEADER as u64 + plen > len {
            break;
        }
        rows += u64::from(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
        off += HEADER as u64 + plen;
    }
    Ok(rows)
}

enum Record {
    Ok(u32, Vec<u8>),
    End,
    Corrupt,
}

fn read_record(path: &Path, off: u64) -> io::Result<Record> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Record::End),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if off >= len {
        return Ok(Record::End);
    }
    if len - off < HEADER as u64 {
        return Ok(Record::Corrupt);
    }
    f.seek(SeekFrom::Start(off))?;
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h)?;
    let plen = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let rows = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if u64::from(plen) > len - off - HEADER as u64 {
        return Ok(Record::Corrupt);
    }
    let mut payload = vec![0u8; plen as usize];
    f.read_exact(&mut payload)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&rows.to_le_bytes());
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(Record::Corrupt);
    }
    Ok(Record::Ok(rows, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = s.peek().unwrap() {
            out.push(b.payload.clone());
            s.ack(&b).unwrap();
        }
        out
    }

    #[test]
    fn batches_come_back_in_order_across_segments_and_segments_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 1 << 20, 4096, FullPolicy::Block).unwrap();
        let batches: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 300]).collect();
        for b in &batches {
            assert!(s.push(1, b).unwrap());
        }
        assert!(s.segments.len() > 1);
        assert_eq!(drain(&mut s), batches);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_reopened_spool_resumes_after_the_last_acknowledged_batch() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20, 1 << 16, FullPolicy::Block).unwrap();
            for i in 0..10u8 {
                s.push(2, &[i; 10]).unwrap();
            }
            for _ in 0..4 {
                let b = s.peek().unwrap().unwrap();
                s.ack(&b).unwrap();
            }
        }
        let mut s = Spool::open(d.path(), 1 << 20, 1 << 16, FullPolicy::Block).unwrap();
        let rest = drain(&mut s);
        assert_eq!(rest, (4..10u8).map(|i| vec![i; 10]).collect::<Vec<_>>());
    }

    #[test]
    fn full_spool_blocks_or_drops_the_oldest_and_counts_rows() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 2000, 4096, FullPolicy::Block).unwrap();
        let mut taken = 0;
        while s.push(5, &[1; 100]).unwrap() {
            taken += 1;
        }
        assert_eq!(taken, 2000 / 112);
        assert!(!s.has_room(100));

        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 2000, 500, FullPolicy::DropOldest).unwrap();
        for i in 0..100u8 {
            assert!(s.push(5, &[i; 100]).unwrap());
        }
        assert!(s.bytes() <= 2000);
        let kept = drain(&mut s);
        assert_eq!(s.stats.dropped_rows + 5 * kept.len() as u64, 500);
        assert_eq!(kept.last().unwrap()[0], 99, "newest kept");
    }

    #[test]
    fn rows_on_disk_are_counted_across_pushes_acks_drops_and_reopening() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20, 4096, FullPolicy::Block).unwrap();
            for i in 0..30u32 {
                s.push(i, &[1; 300]).unwrap();
            }
            assert_eq!(s.rows(), (0..30).sum::<u64>());
            for i in 0..5u32 {
                let b = s.peek().unwrap().unwrap();
                assert_eq!(b.rows, i);
                s.ack(&b).unwrap();
            }
            assert_eq!(s.rows(), (5..30).sum::<u64>());
        }
        let mut s = Spool::open(d.path(), 1 << 20, 4096, FullPolicy::DropOldest).unwrap();
        assert_eq!(s.stats.resumed_rows, (5..30).sum::<u64>());
        assert_eq!(s.rows(), s.stats.resumed_rows);
        s.max_bytes = s.bytes();
        s.push(100, &[2; 300]).unwrap();
        assert!(s.stats.dropped_rows > 0);
        assert_eq!(s.stats.dropped_first, None, "no describer set");
        assert_eq!(
            s.stats.resumed_rows + 100,
            s.rows() + s.stats.dropped_rows,
            "every row is on disk or counted as dropped"
        );
    }

    #[test]
    fn dropped_batches_are_named_first_to_last() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 2000, 500, FullPolicy::DropOldest).unwrap();
        s.set_describe(|p| Some((format!("#{}", p[0]), format!("#{}", p[0]))));
        for i in 0..20u8 {
            s.push(1, &[i; 100]).unwrap();
        }
        let kept = drain(&mut s);
        assert_eq!(s.stats.dropped_first.as_deref(), Some("#0"));
        let first_kept = kept[0][0];
        assert_eq!(
            s.stats.dropped_last,
            Some(format!("#{}", first_kept - 1)),
            "the dropped records end right before the first one kept"
        );
        assert_eq!(s.stats.dropped_rows + kept.len() as u64, 20);
    }

    #[test]
    fn a_torn_record_is_counted_and_skipped() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20, 1 << 20, FullPolicy::Block).unwrap();
            s.push(1, b"good").unwrap();
            s.push(1, b"torn-record").unwrap();
        }
        let seg = fs::read_dir(d.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut s = Spool::open(d.path(), 1 << 20, 1 << 20, FullPolicy::Block).unwrap();
        assert_eq!(s.stats.resumed_rows, 1, "the torn record is not counted");
        assert_eq!(drain(&mut s), vec![b"good".to_vec()]);
        assert_eq!(s.stats.corrupt_records, 1);
        assert!(s.is_empty());
    }
}
