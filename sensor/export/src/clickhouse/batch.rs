//! A ClickHouse batch as the fan-out cuts it, the spool keeps it and the sink sends it: the
//! table's tag, the rows in RowBinary, then where each row starts.
//!
//! Layout: `[tag | INDEXED][row 0][row 1]...[offset of row 0 u32 LE]...[row count u32 LE]`,
//! offsets counted from the first row. The index lets the sink cut a batch into one INSERT per
//! partition (day of `ts`), read every row's identity `(sensor_id, flow_id, event_index)` and,
//! after a lost acknowledgement, send exactly the rows the server does not hold, without
//! knowing the column types (RowBinary has no row delimiter). A batch spooled by an older
//! version has no index (`tag` alone): it is sent whole.

use std::time::Instant;

use super::row_key;
use super::rows::Table;
use crate::sink::Batch;
use sensor_proto::time::NANOS_PER_SEC;

/// Set in the tag byte of a batch that carries its row index.
pub const INDEXED: u8 = 0x10;

/// The partition of a row: the UTC day of its `ts` column (`PARTITION BY toDate(ts)`), from
/// the same saturated seconds the row encoder writes.
pub fn day_of(ts_secs: u32) -> u32 {
    ts_secs / 86_400
}

/// The day of a record's timestamp in nanoseconds, as [`day_of`] of its `ts` column.
pub fn day_of_ns(ts_ns: u64) -> u32 {
    day_of(u32::try_from(ts_ns / NANOS_PER_SEC).unwrap_or(u32::MAX))
}

/// A ClickHouse batch being filled by the fan-out.
pub struct Builder {
    tag: u8,
    rows: u32,
    buf: Vec<u8>,
    offsets: Vec<u32>,
    pub since: Option<Instant>,
}

impl Builder {
    pub fn new(table: Table) -> Builder {
        Builder {
            tag: table.tag() | INDEXED,
            rows: 0,
            buf: Vec::new(),
            offsets: Vec::new(),
            since: None,
        }
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The buffer to encode the next row into.
    pub fn start_row(&mut self) -> &mut Vec<u8> {
        if self.rows == 0 {
            self.buf.clear();
            self.offsets.clear();
            self.buf.push(self.tag);
            self.since = Some(Instant::now());
        }
        // Rows are far below 4 GiB: a batch is at most `batch_rows` rows of a few KiB.
        self.offsets
            .push(u32::try_from(self.buf.len() - 1).unwrap_or(u32::MAX));
        self.rows += 1;
        &mut self.buf
    }

    /// The finished batch, index appended; `None` when empty.
    pub fn take(&mut self) -> Option<Batch> {
        if self.rows == 0 {
            return None;
        }
        for o in &self.offsets {
            self.buf.extend_from_slice(&o.to_le_bytes());
        }
        self.buf.extend_from_slice(&self.rows.to_le_bytes());
        self.since = None;
        Some(Batch::take_from(
            &mut self.buf,
            std::mem::take(&mut self.rows),
        ))
    }
}

/// One row of a batch with its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub bytes: &'a [u8],
    pub flow_id: u64,
    /// 0 for the flows table, which has no `event_index`.
    pub event_index: u32,
    pub ts: u32,
}

/// A batch read back: its table and rows. `sensor_id` is the rows' (one per batch: the
/// fan-out writes one sensor id; a batch whose rows disagree is refused).
#[derive(Debug)]
pub struct Parsed<'a> {
    pub table: Table,
    pub sensor_id: Option<String>,
    /// `None` for a batch without index (older spool): only sent whole.
    pub rows: Option<Vec<Row<'a>>>,
    pub body: &'a [u8],
}

/// Reads a batch payload; the error says why it cannot be sent (never retried).
pub fn parse(payload: &[u8]) -> Result<Parsed<'_>, String> {
    let (&tag, rest) = payload.split_first().ok_or("empty batch")?;
    let table = Table::from_tag(tag & !INDEXED).ok_or(format!("unknown table tag {tag}"))?;
    if tag & INDEXED == 0 {
        let sensor_id = row_key(table, rest).map(|k| k.0);
        return Ok(Parsed {
            table,
            sensor_id,
            rows: None,
            body: rest,
        });
    }
    let n_at = rest.len().checked_sub(4).ok_or("batch without row count")?;
    let n = u32::from_le_bytes(rest[n_at..].try_into().map_err(|_| "row count")?) as usize;
    let index_at = n
        .checked_mul(4)
        .and_then(|b| n_at.checked_sub(b))
        .ok_or("row index longer than the batch")?;
    let body = &rest[..index_at];
    let offset = |i: usize| -> usize {
        let at = index_at + 4 * i;
        u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]) as usize
    };
    let mut rows = Vec::with_capacity(n);
    let mut sensor_id: Option<String> = None;
    for i in 0..n {
        let (start, end) = (
            offset(i),
            if i + 1 < n { offset(i + 1) } else { body.len() },
        );
        let bytes = body
            .get(start..end)
            .filter(|_| start < end)
            .ok_or(format!("row {i} out of bounds"))?;
        let (id, flow_id, idx, ts) =
            row_key(table, bytes).ok_or(format!("row {i} has no readable identity"))?;
        match &sensor_id {
            Some(s) if *s != id => return Err("rows of several sensor ids in one batch".into()),
            Some(_) => {}
            None => sensor_id = Some(id),
        }
        rows.push(Row {
            bytes,
            flow_id,
            event_index: idx.unwrap_or(0),
            ts,
        });
    }
    Ok(Parsed {
        table,
        sensor_id,
        rows: Some(rows),
        body,
    })
}

/// The first and last row of a batch as `table/sensor_id/flow_id/event_index` (what the
/// spool reports when it drops the batch).
pub fn describe(payload: &[u8]) -> Option<(String, String)> {
    let p = parse(payload).ok()?;
    let id = p.sensor_id.unwrap_or_default();
    let rows = p.rows?;
    let name = |r: &Row<'_>| format!("{}/{id}/{}/{}", p.table.name(), r.flow_id, r.event_index);
    Some((name(rows.first()?), name(rows.last()?)))
}

/// Rows grouped by partition, each group in batch order: one INSERT each, so each commits
/// whole or not at all.
pub fn by_day<'a>(rows: &[Row<'a>]) -> Vec<(u32, Vec<Row<'a>>)> {
    let mut groups: Vec<(u32, Vec<Row<'a>>)> = Vec::new();
    for r in rows {
        let d = day_of(r.ts);
        match groups.iter_mut().find(|(day, _)| *day == d) {
            Some((_, g)) => g.push(*r),
            None => groups.push((d, vec![*r])),
        }
    }
    groups
}

/// A deduplication token for an INSERT of these rows: the same rows give the same token, any
/// other set another (64-bit FNV-1a over the identities, with the count and the ends).
pub fn dedup_token(table: Table, sensor_id: &str, rows: &[Row<'_>]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(sensor_id.as_bytes());
    for r in rows {
        eat(&r.flow_id.to_le_bytes());
        eat(&r.event_index.to_le_bytes());
    }
    let (first, last) = (rows.first(), rows.last());
    format!(
        "{}-{}-{}.{}-{}.{}-{h:016x}",
        table.name(),
        rows.len(),
        first.map_or(0, |r| r.flow_id),
        first.map_or(0, |r| r.event_index),
        last.map_or(0, |r| r.flow_id),
        last.map_or(0, |r| r.event_index),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake flows row: the leading columns `row_key` reads, then some filler.
    fn flow_row(out: &mut Vec<u8>, id: &str, flow_id: u64, ts: u32) {
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&flow_id.to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&[7; 9]);
    }

    #[test]
    fn a_batch_is_read_back_row_by_row_and_grouped_by_day() {
        let mut b = Builder::new(Table::Flows);
        let day = 86_400;
        for (i, ts) in [day - 1, day, day - 5, 2 * day + 3].into_iter().enumerate() {
            flow_row(b.start_row(), "s-1", 100 + i as u64, ts);
        }
        let batch = b.take().unwrap();
        assert_eq!(batch.rows, 4);
        assert!(b.take().is_none());
        let p = parse(&batch.payload).unwrap();
        assert_eq!(p.table, Table::Flows);
        assert_eq!(p.sensor_id.as_deref(), Some("s-1"));
        let rows = p.rows.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.flow_id).collect::<Vec<_>>(),
            [100, 101, 102, 103]
        );
        let groups = by_day(&rows);
        let ids: Vec<(u32, Vec<u64>)> = groups
            .iter()
            .map(|(d, g)| (*d, g.iter().map(|r| r.flow_id).collect()))
            .collect();
        assert_eq!(ids, [(0, vec![100, 102]), (1, vec![101]), (2, vec![103])]);
        // The groups' bytes are exactly the rows: concatenated they are the body.
        let total: usize = rows.iter().map(|r| r.bytes.len()).sum();
        assert_eq!(total, p.body.len());
    }

    #[test]
    fn tokens_differ_for_different_row_sets() {
        let mut b = Builder::new(Table::Flows);
        for i in 0..3 {
            flow_row(b.start_row(), "s", i, 10);
        }
        let batch = b.take().unwrap();
        let rows = parse(&batch.payload).unwrap().rows.unwrap();
        let all = dedup_token(Table::Flows, "s", &rows);
        assert_eq!(all, dedup_token(Table::Flows, "s", &rows));
        assert_ne!(all, dedup_token(Table::Flows, "s", &rows[1..]));
        assert_ne!(all, dedup_token(Table::Flows, "t", &rows));
    }

    #[test]
    fn damaged_batches_are_refused_without_panicking() {
        let mut b = Builder::new(Table::DnsQueries);
        let batch = {
            let buf = b.start_row();
            buf.extend_from_slice(&[1, b's']);
            buf.extend_from_slice(&[0; 40]);
            b.take().unwrap()
        };
        assert!(parse(&batch.payload).is_ok());
        for cut in 0..batch.payload.len() {
            let _ = parse(&batch.payload[..cut]);
        }
        let mut bad = batch.payload.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse(&bad).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x7f]).is_err());
        // A batch from an older version (no index) is kept whole.
        let mut legacy = vec![Table::Flows.tag()];
        flow_row(&mut legacy, "s", 1, 2);
        let p = parse(&legacy).unwrap();
        assert!(p.rows.is_none());
        assert_eq!(p.body.len(), legacy.len() - 1);
    }
}
