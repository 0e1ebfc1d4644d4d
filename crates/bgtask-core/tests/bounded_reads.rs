//! Properties of the bounded output readers and the capped writer
//! (src/output.rs) on arbitrary bytes, arbitrary UTF-8 (dense in multi-byte
//! characters) and arbitrary budgets: reads stay within their budget, return
//! the file's own bytes, cut characters only where documented; the capped
//! file stays under its cap and accounts for every byte written.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs::File;
use std::path::{Path, PathBuf};

use bgtask_core::output::{combined_tail, read_range, read_tail, CappedWriter, Snapshot, MIN_CAP};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Width of the capped writer's marker line (fixed, so it can be rewritten
/// in place; output.rs's `MARKER_LEN`).
const MARKER_LEN: usize = 64;
/// Longest head a capped file keeps (output.rs's `MAX_HEAD`).
const MAX_HEAD: u64 = 1 << 20;

fn fixed(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6275_6e64_6564),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Arbitrary bytes, or valid UTF-8 full of 2-, 3- and 4-byte characters.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    let text_char = prop_oneof![
        3 => proptest::char::range('a', 'z'),
        1 => Just('\n'),
        2 => Just('é'),
        2 => Just('€'),
        2 => Just('𝄞'),
        2 => any::<char>(),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(text_char, 0..150)
            .prop_map(|chars| chars.into_iter().collect::<String>().into_bytes()),
    ]
}

/// Budgets around the sizes [`contents`] produces, and the extremes.
fn budget() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..700,
        1 => Just(0),
        1 => Just(u64::MAX),
    ]
}

fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// `len` pseudo-random bytes: cheaper to generate than a strategy's
/// byte vectors, and unlikely to repeat, so head and tail checks cannot
/// pass by accident.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Whether `at` is a character boundary of `data` (which is valid UTF-8).
fn is_boundary(data: &[u8], at: usize) -> bool {
    at == data.len() || data.get(at).is_some_and(|b| b & 0b1100_0000 != 0b1000_0000)
}

proptest! {
    #![proptest_config(fixed(256))]

    #[test]
    fn read_tail_is_the_longest_whole_suffix_within_max(
        data in contents(),
        max in budget(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let chunk = read_tail(&file_with(dir.path(), "out", &data), max).unwrap();
        let len = data.len() as u64;
        prop_assert!(chunk.data.len() as u64 <= max);
        prop_assert_eq!(chunk.file_len, len);
        prop_assert_eq!(chunk.offset + chunk.data.len() as u64, len);
        prop_assert_eq!(&chunk.data[..], &data[chunk.offset as usize..]);
        // Only the continuation bytes of a cut character are left out.
        let start = len.saturating_sub(max) as usize;
        prop_assert!(chunk.offset as usize - start <= 3);
        if std::str::from_utf8(&data).is_ok() {
            prop_assert!(std::str::from_utf8(&chunk.data).is_ok());
            prop_assert!((start..chunk.offset as usize).all(|at| !is_boundary(&data, at)));
        }
    }

    #[test]
    fn read_range_returns_the_files_bytes_within_max(
        data in contents(),
        offset in budget(),
        max in budget(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let chunk = read_range(&file_with(dir.path(), "out", &data), offset, max).unwrap();
        let len = data.len() as u64;
        let start = offset.min(len) as usize;
        let end = start + chunk.data.len();
        prop_assert!(chunk.data.len() as u64 <= max);
        prop_assert_eq!(chunk.file_len, len);
        prop_assert_eq!(chunk.offset as usize, start);
        prop_assert_eq!(&chunk.data[..], &data[start..end]);
        // Only the start of a character cut at the end is left out.
        let want = (len - start as u64).min(max) as usize;
        prop_assert!(want - chunk.data.len() <= 3);
        if std::str::from_utf8(&data).is_ok() {
            // A character boundary, unless cutting back to one would leave
            // nothing (the range starts inside the last character it holds).
            prop_assert!(
                is_boundary(&data, end) || !(start + 1..=end).any(|at| is_boundary(&data, at)),
                "range {start}..{end} ends inside a character"
            );
        }
    }

    #[test]
    fn combined_tail_fits_the_budget_and_ends_with_stderr(
        stdout in contents(),
        stderr in contents(),
        budget in budget(),
        slack in proptest::option::of(0u64..8),
    ) {
        // Budgets within a few bytes of both files' size are where the
        // separator and the shares are decided.
        let total = (stdout.len() + stderr.len()) as u64;
        let budget = slack.map_or(budget, |slack| (total + 4).saturating_sub(slack));
        let dir = tempfile::tempdir().unwrap();
        let out_path = file_with(dir.path(), "stdout", &stdout);
        let err_path = file_with(dir.path(), "stderr", &stderr);
        let tail = combined_tail(&out_path, &err_path, budget).unwrap();
        prop_assert!(tail.text.len() as u64 <= budget);
        let (Ok(out), Ok(err)) = (std::str::from_utf8(&stdout), std::str::from_utf8(&stderr))
        else {
            return Ok(());
        };
        if total <= budget {
            prop_assert!(!tail.truncated, "{:?} from {out:?} and {err:?}", tail.text);
        }
        if err.len() as u64 <= budget / 2 {
            // Stderr gets up to half the budget: a short one is all there.
            prop_assert!(tail.text.ends_with(err), "{:?} lost stderr {err:?}", tail.text);
        }
        if !tail.truncated {
            prop_assert!(tail.text.starts_with(out), "{:?} lost stdout {out:?}", tail.text);
            prop_assert!(tail.text.ends_with(err), "{:?} lost stderr {err:?}", tail.text);
        }
    }
}

proptest! {
    #![proptest_config(fixed(128))]

    #[test]
    fn a_capped_file_keeps_head_marker_and_recent_output(
        cap in MIN_CAP..4 * MIN_CAP,
        writes in proptest::collection::vec(
            (any::<u64>(), prop_oneof![4 => 0usize..300, 1 => 0usize..20_000]),
            0..40,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut writer = CappedWriter::new(path.clone(), file, cap);
        let head = (cap / 2).min(MAX_HEAD) as usize;
        // Compaction leaves half the room after head and marker to the most
        // recent output, and appends only grow it until the next one.
        let retain = (cap as usize - head - MARKER_LEN) / 2;
        let mut written = Vec::new();
        for &(seed, len) in &writes {
            let data = noise(seed, len);
            let compacted = writer.write(&data).unwrap();
            written.extend_from_slice(&data);
            let kept = std::fs::read(&path).unwrap();
            let dropped = writer.dropped();
            // A follower reading the stream from any position gets exactly
            // the bytes written there, and is told how many it missed.
            let snapshot = Snapshot::open(&path, cap).unwrap().unwrap();
            prop_assert_eq!(snapshot.stream_len(), written.len() as u64);
            let mut pos = seed % (written.len() as u64 + 1);
            while pos < written.len() as u64 {
                let read = snapshot.read_stream(pos, 1 + seed % 5000).unwrap();
                let start = (pos + read.skipped) as usize;
                prop_assert!(written[start..].starts_with(&read.data), "wrong bytes at {}", start);
                prop_assert!(!read.data.is_empty() || read.skipped > 0, "stuck at {}", pos);
                pos = read.next;
            }
            prop_assert_eq!(pos, written.len() as u64);
            prop_assert!(kept.len() as u64 <= cap, "{} bytes over a cap of {cap}", kept.len());
            prop_assert!(!compacted || dropped > 0, "compacted without dropping");
            if dropped == 0 {
                prop_assert!(kept == written, "nothing dropped, yet the file differs");
                continue;
            }
            prop_assert!(kept.len() >= head + MARKER_LEN + retain);
            prop_assert!(kept[..head] == written[..head], "the head changed");
            let marker = std::str::from_utf8(&kept[head..head + MARKER_LEN]).unwrap();
            let text = format!("\n[bgtask: {dropped} bytes of output dropped here]");
            prop_assert!(marker.starts_with(&text), "marker {marker:?}");
            prop_assert!(marker[text.len()..].trim_start_matches(' ') == "\n", "marker {marker:?}");
            prop_assert!(written.ends_with(&kept[head + MARKER_LEN..]), "the tail is not the latest output");
            prop_assert_eq!(
                (kept.len() - MARKER_LEN) as u64 + dropped,
                written.len() as u64,
                "every byte is either kept or counted as dropped"
            );
        }
    }
}

#[test]
fn missing_files_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_eq!(read_tail(&missing, 10).unwrap().data, b"");
    assert_eq!(read_range(&missing, 3, 10).unwrap().data, b"");
    let tail = combined_tail(&missing, &missing, 10).unwrap();
    assert_eq!((tail.text.as_str(), tail.truncated), ("", false));
}
