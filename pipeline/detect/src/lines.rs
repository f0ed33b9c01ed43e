//! Reading lines of hostile input (EVE from a pipe, downloaded indicator feeds) with a bound
//! on a line's length: std's `read_until` grows its buffer until it meets a newline, so a
//! stream without one (a binary file given by mistake, a truncated feed) would take all the
//! memory there is. A line past the bound is skipped to its end and reported, never kept.

use std::io::{self, BufRead, Read};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A line (in the buffer, its newline included when it had one).
    Line,
    /// A line longer than the bound, skipped to its newline (the buffer is empty).
    TooLong,
    /// End of input.
    Eof,
}

/// Reads the next line into `buf` (cleared first), keeping at most `max` bytes of it plus the
/// newline. Memory stays within `max + 1` bytes of `buf` whatever the input holds.
pub fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if input.by_ref().take(limit).read_until(b'\n', buf)? == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') || buf.len() <= max {
        return Ok(Line::Line);
    }
    buf.clear();
    skip_to_newline(input)?;
    Ok(Line::TooLong)
}

/// Consumes input up to and including the next newline (or to the end).
fn skip_to_newline<R: BufRead>(input: &mut R) -> io::Result<()> {
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn all(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, &mut buf, max).unwrap();
            assert!(buf.capacity() <= 64, "buffer grew to {}", buf.capacity());
            if l == Line::Eof {
                return out;
            }
            out.push((l, buf.clone()));
        }
    }

    #[test]
    fn lines_within_the_bound_come_whole_and_longer_ones_are_skipped_to_their_end() {
        let long = vec![b'x'; 10_000];
        let mut input = b"ab\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\n0123456789\nlast");
        let got = all(&input, 10);
        assert_eq!(
            got,
            vec![
                (Line::Line, b"ab\n".to_vec()),
                (Line::TooLong, vec![]),
                (Line::Line, b"0123456789\n".to_vec()),
                (Line::Line, b"last".to_vec()),
            ]
        );
    }

    #[test]
    fn an_endless_line_without_newline_is_one_skipped_line() {
        let got = all(&vec![b'{'; 100_000], 16);
        assert_eq!(got, vec![(Line::TooLong, vec![])]);
    }
}
