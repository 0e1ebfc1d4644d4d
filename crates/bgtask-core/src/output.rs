//! Task output on disk: the capped writer the monitor appends with, and
//! bounded readers whose cost is O(bytes requested), never O(file size).
//!
//! A capped file keeps its beginning (the head, at most half the cap and at
//! most 1 MiB), then a fixed-width marker line saying how many bytes were
//! dropped, then the most recent output. The file is plain text at every
//! moment, so `cat` of the output path always shows head, marker and tail.
//!
//! Invariant: an output file, once opened, only ever grows by appends.
//! Compaction writes the compacted file beside it and renames it over the
//! old one, so a reader holding the old file keeps a consistent view (a
//! [`Snapshot`]) and one that opens the path again sees the new layout
//! whole; no reader can see data moved half-way.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Longest head kept when the cap is large.
const MAX_HEAD: u64 = 1 << 20;
/// Width of the marker line, so it can be rewritten in place.
const MARKER_LEN: u64 = 64;
/// Smallest cap that leaves room for head, marker and tail.
pub const MIN_CAP: u64 = 4096;

/// Appends a stream's output to its file, keeping the file under `cap` bytes.
pub struct CappedWriter {
    path: PathBuf,
    file: File,
    cap: u64,
    head: u64,
    len: u64,
    /// Bytes removed by compaction (non-zero once the marker exists).
    dropped: u64,
    /// Bytes that could not be written (disk full).
    lost: u64,
}

/// The head a capped file of a stream with cap `stream_cap` keeps.
pub fn head_len(stream_cap: u64) -> u64 {
    (stream_cap.max(MIN_CAP) / 2).min(MAX_HEAD)
}

impl CappedWriter {
    /// A writer appending to `file`, which is open at `path` (compaction
    /// replaces the file at `path`).
    pub fn new(path: PathBuf, file: File, cap: u64) -> Self {
        let cap = cap.max(MIN_CAP);
        CappedWriter {
            path,
            file,
            cap,
            head: head_len(cap),
            len: 0,
            dropped: 0,
            lost: 0,
        }
    }

    /// Bytes dropped so far to respect the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped + self.lost
    }

    /// Appends `data`; when the file would pass the cap, compacts it to head
    /// + marker + the most recent output. Returns true if it compacted.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<bool> {
        if self.len + data.len() as u64 <= self.cap {
            self.append(data)?;
            return Ok(false);
        }
        if self.len < self.head {
            let fill = (self.head - self.len) as usize;
            self.append(&data[..fill])?;
            data = &data[fill..];
        }
        let tail_start = if self.dropped > 0 {
            self.head + MARKER_LEN
        } else {
            self.head
        };
        let body = self.head + MARKER_LEN;
        // After compaction the tail region holds `retain` bytes, leaving as
        // much room again before the next compaction (amortised O(1) copying).
        let retain = (self.cap - body) / 2;
        let from_data = (data.len() as u64).min(retain);
        let from_file = (retain - from_data).min(self.len - tail_start);
        let dropped =
            self.dropped + (self.len - tail_start - from_file) + (data.len() as u64 - from_data);
        let compacted = self.replace(dropped, self.len - from_file, from_file)?;
        self.file = compacted;
        self.len = body + from_file;
        self.dropped = dropped;
        self.append(&data[data.len() - from_data as usize..])?;
        Ok(true)
    }

    /// Writes head + marker + `tail_len` bytes from `tail_from` into a new
    /// file beside the old one and renames it over the old one.
    fn replace(&self, dropped: u64, tail_from: u64, tail_len: u64) -> io::Result<File> {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".compacting");
        let next_path = self.path.with_file_name(name);
        let next = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&next_path)?;
        let written = copy_between(&self.file, 0, &next, 0, self.head)
            .and_then(|()| next.write_all_at(&marker_line(dropped), self.head))
            .and_then(|()| {
                copy_between(
                    &self.file,
                    tail_from,
                    &next,
                    self.head + MARKER_LEN,
                    tail_len,
                )
            })
            .and_then(|()| std::fs::rename(&next_path, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&next_path);
            return Err(e);
        }
        Ok(next)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all_at(data, self.len) {
            // A partial write may have extended the file: cut it back so
            // the file stays consistent, and count the bytes as dropped.
            let _ = self.file.set_len(self.len);
            self.lost += data.len() as u64;
            return Err(e);
        }
        self.len += data.len() as u64;
        Ok(())
    }
}

/// The marker line: exactly `MARKER_LEN` bytes.
fn marker_line(dropped: u64) -> Vec<u8> {
    let text = format!("[bgtask: {dropped} bytes of output dropped here]");
    let width = MARKER_LEN as usize - 2;
    let mut line = format!("\n{text:<width$}\n").into_bytes();
    line.truncate(MARKER_LEN as usize);
    line
}

/// The dropped count of a marker line, if `bytes` is one.
fn parse_marker(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let inner = text
        .strip_prefix("\n[bgtask: ")?
        .strip_suffix('\n')?
        .trim_end();
    inner
        .strip_suffix(" bytes of output dropped here]")?
        .parse()
        .ok()
}

/// Copies `len` bytes at `from` in `src` to `to` in `dst`, in chunks.
fn copy_between(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; (len as usize).min(256 << 10)];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], from + done)?;
        dst.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// One consistent view of a stream's output file, in positions of the
/// stream itself (every byte the task wrote, dropped or not), so a reader
/// can follow a file that compaction replaces under it and say exactly
/// what it missed.
pub struct Snapshot {
    file: File,
    len: u64,
    /// Where the head ends and how much was dropped after it, once the
    /// file was compacted.
    capped: Option<(u64, u64)>,
}

/// What one [`Snapshot::read_stream`] found.
#[derive(Debug, Default)]
pub struct StreamRead {
    /// Bytes dropped by the cap between the requested position and `data`.
    pub skipped: u64,
    pub data: Vec<u8>,
    /// The stream position after `data`.
    pub next: u64,
}

impl Snapshot {
    /// Opens the file at `path`, written with stream cap `stream_cap`; `None`
    /// if it does not exist (yet).
    pub fn open(path: &Path, stream_cap: u64) -> io::Result<Option<Snapshot>> {
        let Some(file) = open_existing(path)? else {
            return Ok(None);
        };
        let len = file.metadata()?.len();
        let head = head_len(stream_cap);
        let capped = if len >= head + MARKER_LEN {
            let marker = read_at(&file, head, MARKER_LEN as usize)?;
            parse_marker(&marker).map(|dropped| (head, dropped))
        } else {
            None
        };
        Ok(Some(Snapshot { file, len, capped }))
    }

    /// How many bytes the stream held when the snapshot was taken.
    pub fn stream_len(&self) -> u64 {
        match self.capped {
            Some((_, dropped)) => self.len - MARKER_LEN + dropped,
            None => self.len,
        }
    }

    /// Where to start showing the last ≤ `max` bytes: never inside the
    /// dropped part nor inside a UTF-8 character.
    pub fn tail_start(&self, max: u64) -> io::Result<u64> {
        let mut start = self.stream_len().saturating_sub(max);
        if let Some((head, dropped)) = self.capped {
            if (head..head + dropped).contains(&start) {
                start = head + dropped;
            }
        }
        if start == 0 {
            return Ok(0);
        }
        let lead = self.read_stream(start, 3)?;
        Ok(start + utf8_start_skip(&lead.data) as u64)
    }

    /// Up to `max` bytes of the stream from position `pos`.
    pub fn read_stream(&self, pos: u64, max: u64) -> io::Result<StreamRead> {
        let (mut pos, mut skipped) = (pos, 0);
        let file_pos = match self.capped {
            None => pos,
            Some((head, _)) if pos < head => pos,
            Some((head, dropped)) => {
                if pos < head + dropped {
                    skipped = head + dropped - pos;
                    pos = head + dropped;
                }
                pos - dropped + MARKER_LEN
            }
        };
        // A head read stops at the marker; the next read continues after it.
        let end = match self.capped {
            Some((head, _)) if file_pos < head => head,
            _ => self.len,
        };
        let want = end.saturating_sub(file_pos).min(max) as usize;
        let data = read_at(&self.file, file_pos, want)?;
        Ok(StreamRead {
            skipped,
            next: pos + data.len() as u64,
            data,
        })
    }
}

/// A bounded slice of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Offset of `data[0]` in the file.
    pub offset: u64,
    /// File length when it was read.
    pub file_len: u64,
}

impl Chunk {
    /// Whether the chunk leaves out part of the file.
    pub fn is_partial(&self) -> bool {
        self.data.len() as u64 != self.file_len
    }
}

/// The last ≤ `max` bytes of a file, starting on a UTF-8 character boundary.
/// A missing file reads as empty.
pub fn read_tail(path: &Path, max: u64) -> io::Result<Chunk> {
    let Some(file) = open_existing(path)? else {
        return Ok(Chunk::default());
    };
    let file_len = file.metadata()?.len();
    let start = file_len.saturating_sub(max);
    let mut data = read_at(&file, start, (file_len - start) as usize)?;
    let skip = if start > 0 { utf8_start_skip(&data) } else { 0 };
    data.drain(..skip);
    Ok(Chunk {
        data,
        offset: start + skip as u64,
        file_len,
    })
}

/// Up to `max` bytes from `offset`, ending on a UTF-8 character boundary
/// (unless that would return nothing).
pub fn read_range(path: &Path, offset: u64, max: u64) -> io::Result<Chunk> {
    let Some(file) = open_existing(path)? else {
        return Ok(Chunk::default());
    };
    let file_len = file.metadata()?.len();
    let offset = offset.min(file_len);
    let want = (file_len - offset).min(max) as usize;
    let mut data = read_at(&file, offset, want)?;
    if offset + (data.len() as u64) < file_len {
        let keep = utf8_complete_prefix(&data);
        if keep > 0 {
            data.truncate(keep);
        }
    }
    Ok(Chunk {
        data,
        offset,
        file_len,
    })
}

fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut data[filled..], offset + filled as u64)? {
            0 => break, // the file shrank under us (compaction): return what we have
            n => filled += n,
        }
    }
    data.truncate(filled);
    Ok(data)
}

/// How many leading bytes to skip so `bytes` starts at a character boundary
/// (at most 3 continuation bytes).
pub fn utf8_start_skip(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
        .count()
}

/// The length of the longest prefix of `bytes` that does not end inside a
/// multi-byte character.
pub fn utf8_complete_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // Look back at most 3 bytes for the lead byte of the last character.
    for back in 1..=len.min(4) {
        let b = bytes[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte
        }
        let need = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1, // invalid lead byte: keep it, lossy decoding will show it
        };
        return if need > back { len - back } else { len };
    }
    len
}

/// The last ≤ `max` bytes of `text` as a string, never split inside a
/// character.
pub fn str_tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(cap: u64) -> (tempfile::TempDir, std::path::PathBuf, CappedWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, path.clone(), CappedWriter::new(path, file, cap))
    }

    #[test]
    fn capped_file_keeps_head_marker_and_recent_tail() {
        let (_dir, path, mut w) = writer(8192);
        let mut total = 0u64;
        for i in 0..2000u32 {
            let line = format!("line {i:05}\n");
            total += line.len() as u64;
            w.write(line.as_bytes()).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() <= 8192);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("line 00000\n"));
        assert!(text.ends_with("line 01999\n"));
        let kept = text.len() as u64 - MARKER_LEN;
        assert_eq!(
            w.dropped() + kept,
            total,
            "every byte is either kept or counted"
        );
        assert!(text.contains(&format!(
            "[bgtask: {} bytes of output dropped here]",
            w.dropped()
        )));
    }

    #[test]
    fn a_single_write_larger_than_the_cap_is_capped() {
        let (_dir, path, mut w) = writer(4096);
        w.write(&vec![b'x'; 100_000]).unwrap();
        w.write(b"END").unwrap();
        let data = std::fs::read(&path).unwrap();
        assert!(data.len() as u64 <= 4096);
        assert!(data.ends_with(b"xEND"));
        assert_eq!(w.dropped() + data.len() as u64 - MARKER_LEN, 100_003);
    }

    #[test]
    fn tails_never_start_inside_a_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "ééééé".as_bytes()).unwrap(); // 10 bytes, 2 per char
        for max in 0..12 {
            let chunk = read_tail(&path, max).unwrap();
            let text = String::from_utf8(chunk.data.clone()).expect("valid utf-8");
            assert!(text.len() as u64 <= max);
            assert_eq!(chunk.offset + text.len() as u64, 10);
        }
        let head = read_range(&path, 0, 3).unwrap();
        assert_eq!(head.data, "é".as_bytes());
    }

    #[test]
    fn complete_prefix_handles_every_width() {
        for s in ["a", "é", "€", "𝄞"] {
            let mut bytes = b"ab".to_vec();
            bytes.extend_from_slice(s.as_bytes());
            for cut in 2..bytes.len() {
                assert_eq!(utf8_complete_prefix(&bytes[..cut]), 2, "{s} cut at {cut}");
            }
            assert_eq!(utf8_complete_prefix(&bytes), bytes.len());
        }
        assert_eq!(str_tail("héllo", 4), "llo");
    }

    /// Found by tests/bounded_reads.rs: a separator added when stdout and
    /// stderr just fit pushed out a byte of stdout, and bytes cut after
    /// lossy decoding grew the text were not reported as truncated.
    #[test]
    fn combined_tail_never_cuts_output_unreported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let tail_of = |stdout: &[u8], stderr: &[u8], budget| {
            std::fs::write(&out, stdout).unwrap();
            std::fs::write(&err, stderr).unwrap();
            let tail = combined_tail(&out, &err, budget).unwrap();
            (tail.text, tail.truncated)
        };
        assert_eq!(tail_of(b"a", b"b", 2), ("ab".to_owned(), false));
        assert_eq!(tail_of(b"a", b"b", 3), ("a\nb".to_owned(), false));
        let (text, truncated) = tail_of(&[0xff; 3], b"", 3);
        assert_eq!((text.as_str(), truncated), ("\u{fffd}", true));
    }
}

/// The last part of a task's output for previews and `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub text: String,
    /// True when `text` leaves out earlier output.
    pub truncated: bool,
}

/// The last ≤ `budget` bytes of stdout followed by the last bytes of stderr.
/// When both do not fit, stderr gets up to half the budget (errors matter
/// most) and stdout the rest. Never splits a character; reads O(budget).
pub fn combined_tail(stdout: &Path, stderr: &Path, budget: u64) -> io::Result<Tail> {
    let out_len = file_len(stdout)?;
    let err_len = file_len(stderr)?;
    let err_share = err_len.min((budget / 2).max(budget.saturating_sub(out_len)));
    let out_share = budget - err_share;
    let out = read_tail(stdout, out_share)?;
    let err = read_tail(stderr, err_share)?;
    let mut text = String::from_utf8_lossy(&out.data).into_owned();
    let err_text = String::from_utf8_lossy(&err.data);
    // The separator only where it fits: it must not push output out.
    if !text.is_empty()
        && !err_text.is_empty()
        && !text.ends_with('\n')
        && text.len() + 1 + err_text.len() <= budget as usize
    {
        text.push('\n');
    }
    text.push_str(&err_text);
    // Lossy decoding may grow invalid bytes into U+FFFD; keep the budget,
    // and say so when that cuts output.
    let shown = str_tail(&text, budget as usize);
    Ok(Tail {
        truncated: out.is_partial() || err.is_partial() || shown.len() < text.len(),
        text: shown.to_owned(),
    })
}

fn file_len(path: &Path) -> io::Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}
