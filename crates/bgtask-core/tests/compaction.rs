//! Output shaping on real tool output (tests/corpus, made by
//! scripts/make-corpus.sh) and on small and generated inputs.
//!
//! The corpus table prints with `cargo nextest run -p bgtask-core
//! --no-capture -E 'test(corpus)'`.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::PathBuf;

use bgtask_core::compact::{bound, compact, render, shape_bytes, shape_file, ShapeOptions, Shaped};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const PROBLEM_WORDS: [&str; 7] = [
    "error",
    "warn",
    "fail",
    "panic",
    "fatal",
    "exception",
    "traceback",
];

fn mentions_problem(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    PROBLEM_WORDS.iter().any(|word| lower.contains(word))
}

/// Each line of `raw` as a terminal leaves it, worked out independently of
/// `render`: CSI and OSC sequences dropped, the last non-blank `\r` state
/// kept, trailing blanks trimmed.
fn plain_lines(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                let mut params = String::new();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        // Cursor to column 1 (npm's spinner) acts as `\r`.
                        if c == 'G' && (params.is_empty() || params == "1") {
                            text.push('\r');
                        }
                        break;
                    }
                    params.push(c);
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        chars.next();
                        break;
                    }
                }
            }
            // Other sequences: intermediate bytes, then one final byte.
            Some(' '..='/') => {
                for c in chars.by_ref() {
                    if !(' '..='/').contains(&c) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    text.split('\n')
        .map(|line| {
            let last = line.rsplit('\r').find(|s| !s.trim().is_empty());
            last.unwrap_or("").trim_end().to_owned()
        })
        .collect()
}

/// Asserts every line of `wanted` is a line of `text`, in the same order.
fn assert_lines_in_order<'a>(wanted: impl IntoIterator<Item = &'a str>, text: &str, what: &str) {
    let mut lines = text.split('\n');
    for line in wanted {
        assert!(
            lines.any(|l| l == line),
            "{what}: line {line:?} is missing or out of order in:\n{text}"
        );
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut samples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    samples.sort();
    samples
}

#[test]
fn corpus_compacts_and_keeps_every_problem_line() {
    let samples = corpus();
    assert!(
        samples.len() >= 5,
        "the corpus is missing: run scripts/make-corpus.sh"
    );
    let (mut total_raw, mut total_compacted, mut problem_lines) = (0, 0, 0);
    println!(
        "{:<16} {:>10} {:>10} {:>10}",
        "sample", "raw", "compacted", "reduction"
    );
    for (name, raw) in &samples {
        let text = String::from_utf8_lossy(raw);
        let compacted = compact(&text);
        let reduction = 100.0 * (1.0 - compacted.len() as f64 / raw.len() as f64);
        println!(
            "{name:<16} {:>10} {:>10} {reduction:>9.1}%",
            raw.len(),
            compacted.len()
        );
        total_raw += raw.len();
        total_compacted += compacted.len();

        assert!(
            !compacted.contains(['\u{1b}', '\r']),
            "{name}: escapes or carriage returns survived"
        );
        let plain = plain_lines(&text);
        let problems: Vec<&str> = plain
            .iter()
            .map(String::as_str)
            .filter(|l| mentions_problem(l))
            .collect();
        problem_lines += problems.len();
        assert_lines_in_order(problems, &compacted, name);

        assert!(compacted.len() < raw.len(), "{name}: nothing was saved");
        // Progress bars are mostly redraws; npm's unique http log lines stay.
        let is_progress_bar = ["cargo-build", "pip-install", "curl-download"];
        if is_progress_bar.contains(&name.as_str()) {
            assert!(
                compacted.len() * 2 < raw.len(),
                "{name}: progress output barely shrank"
            );
        }
    }
    let reduction = 100.0 * (1.0 - total_compacted as f64 / total_raw as f64);
    println!(
        "{:<16} {total_raw:>10} {total_compacted:>10} {reduction:>9.1}%",
        "total"
    );
    assert!(
        problem_lines > 0,
        "the corpus should contain warnings and failures"
    );
    assert!(
        total_compacted * 2 < total_raw,
        "compaction should at least halve the corpus"
    );
}

#[test]
fn render_strips_escape_sequences_and_controls() {
    let cases = [
        ("\u{1b}[1m\u{1b}[31merror\u{1b}[0m: boom", "error: boom"),
        (
            "\u{1b}]8;;file:///x\u{1b}\\link\u{1b}]8;;\u{1b}\\ text",
            "link text",
        ),
        ("\u{1b}]0;title\u{7}prompt", "prompt"),
        ("\u{1b}(B\u{1b}[mplain\u{1b}=", "plain"),
        ("a\u{0}b\u{7}c\u{7f}d\u{1b}", "abcd"),
        ("keep\ttabs", "keep\ttabs"),
        ("trailing   \t", "trailing"),
        ("\u{1b}[?25lhidden cursor\u{1b}[?25h", "hidden cursor"),
    ];
    for (raw, want) in cases {
        assert_eq!(render(raw), want, "{raw:?}");
    }
}

#[test]
fn malformed_escapes_never_swallow_lines() {
    assert_eq!(
        render("\u{1b}]unterminated\nerror: next line"),
        "\nerror: next line"
    );
    assert_eq!(render("\u{1b}[12\nerror"), "\nerror");
    assert_eq!(render("\u{1b}]a\u{1b}]b\u{1b}[31mred"), "red");
}

#[test]
fn carriage_returns_keep_the_final_state() {
    assert_eq!(
        render("Downloading 10%\rDownloading 55%\rDownloading 100%\n"),
        "Downloading 100%\n"
    );
    assert_eq!(render("line one\r\nline two\r\n"), "line one\nline two\n");
    assert_eq!(render("done\r"), "done");
    assert_eq!(
        render("50%\r\u{1b}[K"),
        "",
        "a cleared progress line is gone"
    );
    assert_eq!(render("bar\u{1b}[2K\rwarning: x"), "warning: x");
    assert_eq!(render("12%\u{1b}[1G\u{1b}[0K99%"), "99%");
    assert_eq!(render("working |\u{8}/\u{8}-\u{8}done"), "working done");
}

#[test]
fn identical_lines_fold_into_the_last_with_a_count() {
    assert_eq!(compact("a\na\na\na\nb\n"), "a\n  [×4 identical lines]\nb\n");
    assert_eq!(
        compact("a\na\nb"),
        "a\na\nb",
        "two lines are not worth a marker"
    );
}

#[test]
fn lines_differing_only_in_numbers_fold() {
    let progress: String = (0..=100)
        .map(|p| format!("Downloading {p:>3}%\n"))
        .collect();
    assert_eq!(
        compact(&progress),
        "Downloading 100%\n  [×101 similar lines]\n"
    );

    let tests: String = (1..=57)
        .map(|i| format!("test tests::case_{i} ... ok\n"))
        .collect();
    let text = format!("running 57 tests\n{tests}\ntest result: ok.\n");
    assert_eq!(
        compact(&text),
        "running 57 tests\ntest tests::case_57 ... ok\n  [×57 similar lines]\n\ntest result: ok.\n"
    );

    let bars = "━━━━╺━━━━ 1.2/16.9 MB 3.1 MB/s\n━━━━━━━╸━ 12.0/16.9 MB 30.4 MB/s\n━━━━━━━━━ 16.9/16.9 MB 9.0 MB/s\n";
    assert_eq!(
        compact(bars),
        "━━━━━━━━━ 16.9/16.9 MB 9.0 MB/s\n  [×3 similar lines]\n"
    );

    let names = "Compiling serde v1.0\nCompiling regex v1.1\nCompiling rand v0.9\n";
    assert_eq!(compact(names), names, "lines that differ in words are kept");
}

#[test]
fn problem_lines_are_never_folded_and_break_runs() {
    let errors = "error: boom\n".repeat(5);
    assert_eq!(compact(&errors), errors);
    let mixed = "step 1\nstep 2\nerror at step 3\nstep 4\nstep 5\nstep 6\nWARNING 7\nTraceback 8\ntest x ... FAILED\nthread panicked\n";
    assert_eq!(
        compact(mixed),
        "step 1\nstep 2\nerror at step 3\nstep 6\n  [×3 similar lines]\nWARNING 7\nTraceback 8\ntest x ... FAILED\nthread panicked\n"
    );
}

#[test]
fn blank_runs_fold_to_one_blank_line() {
    assert_eq!(compact("a\n\n\n\n  \nb\n\n\n"), "a\n\nb\n\n");
    assert_eq!(compact(""), "");
    assert_eq!(compact("\n"), "\n");
}

/// Splits a bounded text into (head, omitted, tail), dropping the newline
/// the marker adds after a head that was cut mid-line.
fn parts<'a>(shaped: &'a Shaped, head_source: &str) -> (&'a str, u64, &'a str) {
    let marker = format!("[… {} bytes omitted …]\n", shaped.omitted_bytes);
    let at = shaped.text.find(&marker).expect("marker present");
    let mut head = &shaped.text[..at];
    if !head_source.starts_with(head) {
        head = head.strip_suffix('\n').expect("only a newline is added");
    }
    (
        head,
        shaped.omitted_bytes,
        &shaped.text[at + marker.len()..],
    )
}

#[test]
fn bound_keeps_head_marker_and_tail_at_line_boundaries() {
    let text: String = (0..100).map(|i| format!("line {i:04}\n")).collect(); // 10 bytes a line
    assert_eq!(
        bound(&text, 1000),
        Shaped {
            text: text.clone(),
            truncated: false,
            omitted_bytes: 0
        }
    );

    let shaped = bound(&text, 300);
    assert!(shaped.text.len() <= 300 && shaped.truncated);
    let (head, omitted, tail) = parts(&shaped, &text);
    assert!(text.starts_with(head) && text.ends_with(tail));
    assert_eq!(head.len() % 10, 0, "head is whole lines");
    assert_eq!(tail.len() % 10, 0, "tail is whole lines");
    assert_eq!(omitted as usize, text.len() - head.len() - tail.len());
    assert!(tail.len() > head.len(), "the tail gets the larger share");
    assert!(head.len() >= 60, "the head gets about 40%: {}", head.len());
}

#[test]
fn bound_holds_every_budget_exactly() {
    let text: String = (0..40).map(|i| format!("row {i}\n")).collect();
    let marker_line = "[… 999 bytes omitted …]\n".len();
    for budget in 0..=text.len() + 2 {
        let shaped = bound(&text, budget);
        assert!(
            shaped.text.len() <= budget,
            "budget {budget}: {} bytes",
            shaped.text.len()
        );
        if budget >= text.len() {
            assert_eq!(shaped.text, text);
            continue;
        }
        if budget < marker_line {
            assert!(
                text.ends_with(&shaped.text),
                "tiny budget {budget} keeps only a tail"
            );
            assert_eq!(
                shaped.omitted_bytes as usize,
                text.len() - shaped.text.len()
            );
        } else {
            let (head, omitted, tail) = parts(&shaped, &text);
            assert!(
                text.starts_with(head) && text.ends_with(tail),
                "budget {budget}"
            );
            assert_eq!(omitted as usize, text.len() - head.len() - tail.len());
        }
        assert!(shaped.truncated);
    }
}

#[test]
fn extreme_budgets_and_gaps_do_not_overflow() {
    assert_eq!(bound("abc", usize::MAX).text, "abc");
    assert_eq!(
        bound("abc", 0),
        Shaped {
            text: String::new(),
            truncated: true,
            omitted_bytes: 3
        }
    );
    let shaped = shape_bytes(b"x\n", Some(b"y\n"), u64::MAX, opts(usize::MAX));
    assert_eq!(
        shaped.text,
        format!("x\n[… {} bytes omitted …]\ny\n", u64::MAX)
    );
    assert_eq!(shaped.omitted_bytes, u64::MAX);
    assert_eq!(shape_bytes(b"", None, 0, opts(0)), Shaped::default());
}

#[test]
fn bound_never_splits_a_character() {
    let text = "é€𝄞x".repeat(30);
    for budget in 0..=text.len() {
        let shaped = bound(&text, budget);
        assert!(shaped.text.len() <= budget);
        assert!(!shaped.text.contains('\u{fffd}'));
    }
}

fn opts(budget: usize) -> ShapeOptions {
    ShapeOptions {
        budget,
        compress: true,
    }
}

#[test]
fn shape_bytes_shows_whole_lines_and_counts_the_gap() {
    let head = "héllo\nwörld€".as_bytes();
    let head = &head[..head.len() - 1]; // ends inside €
    let tail = &"€ last line\n".as_bytes()[2..]; // starts inside €
    let shaped = shape_bytes(head, Some(tail), 1000, opts(4096));
    // The head's cut last line goes; the tail has no whole line, so it
    // falls back to whole characters.
    assert_eq!(shaped.text, "héllo\n[… 1009 bytes omitted …]\n last line\n");
    assert_eq!(
        shaped.omitted_bytes,
        1000 + "wörld".len() as u64 + 2 + 1,
        "the gap, the cut line and the cut €s"
    );
    assert!(shaped.truncated);

    // Windows that touch keep a character split between them.
    let whole = "ab€cd".as_bytes();
    let shaped = shape_bytes(&whole[..3], Some(&whole[3..]), 0, opts(100));
    assert_eq!(
        shaped,
        Shaped {
            text: "ab€cd".into(),
            truncated: false,
            omitted_bytes: 0
        }
    );

    let invalid = shape_bytes(b"ok \xff\xfe\n", None, 0, opts(100));
    assert_eq!(invalid.text, "ok \u{fffd}\u{fffd}\n");
}

#[test]
fn shape_bytes_compacts_each_part_only_when_asked() {
    let noisy = "\u{1b}[32mtick 1\u{1b}[0m\ntick 2\ntick 3\n";
    let shaped = shape_bytes(noisy.as_bytes(), Some(b"error: late\n"), 7, opts(4096));
    assert_eq!(
        shaped.text,
        "tick 3\n  [×3 similar lines]\n[… 7 bytes omitted …]\nerror: late\n"
    );
    let raw = ShapeOptions {
        budget: 4096,
        compress: false,
    };
    let shaped = shape_bytes(noisy.as_bytes(), None, 0, raw);
    assert_eq!(shaped.text, noisy);
}

#[test]
fn shape_bytes_cuts_large_parts_to_the_budget() {
    let head: String = (0..500)
        .map(|i| format!("head {i}: {}\n", "x".repeat(i % 7)))
        .collect();
    let tail: String = (0..500)
        .map(|i| format!("tail {i}: {}\n", "y".repeat(i % 5)))
        .collect();
    let raw = ShapeOptions {
        budget: 2000,
        compress: false,
    };
    let shaped = shape_bytes(head.as_bytes(), Some(tail.as_bytes()), 10_000, raw);
    assert!(shaped.text.len() <= 2000);
    let (shown_head, omitted, shown_tail) = parts(&shaped, &head);
    assert!(head.starts_with(shown_head) && tail.ends_with(shown_tail));
    let expected = head.len() + 10_000 + tail.len() - shown_head.len() - shown_tail.len();
    assert_eq!(omitted as usize, expected);
}

#[test]
fn shape_file_reads_small_files_whole_and_large_ones_by_window() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        shape_file(&dir.path().join("missing"), opts(100)).unwrap(),
        Shaped::default()
    );

    let small = dir.path().join("small");
    std::fs::write(&small, "one\ntwo\n").unwrap();
    assert_eq!(shape_file(&small, opts(100)).unwrap().text, "one\ntwo\n");

    let big = dir.path().join("big");
    let text: String = (0..200_000)
        .map(|i| format!("entry {i} of {}\n", i % 97))
        .collect();
    std::fs::write(&big, &text).unwrap();
    let shaped = shape_file(
        &big,
        ShapeOptions {
            budget: 4000,
            compress: false,
        },
    )
    .unwrap();
    assert!(shaped.text.len() <= 4000 && shaped.truncated);
    assert!(shaped.text.starts_with("entry 0 of 0\n"));
    assert!(shaped.text.ends_with("entry 199999 of 82\n"));
    let (head, omitted, tail) = parts(&shaped, &text);
    assert_eq!(omitted as usize, text.len() - head.len() - tail.len());
}

fn fixed(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6267_7461_736b),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text that looks like tool output: numbered lines, problem lines,
/// escapes, carriage returns, blank lines and arbitrary characters.
fn noisy_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "(step|tick|Downloading) [0-9]{1,3}%?",
        "(error|Error|ERROR)[: a-z0-9]{0,8}",
        "\u{1b}\\[[0-9;]{0,5}[mKG]",
        "\u{1b}\\][^\u{7}]{0,6}\u{7}?",
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        "[a-z ]{0,12}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(fixed(512))]

    #[test]
    fn compact_keeps_every_rendered_error_line(text in noisy_text()) {
        let rendered = render(&text);
        let compacted = compact(&text);
        let errors = rendered.split('\n').filter(|l| l.to_ascii_lowercase().contains("error"));
        assert_lines_in_order(errors, &compacted, "compact");
    }

    #[test]
    fn compact_keeps_plain_error_lines_verbatim(
        lines in proptest::collection::vec("([a-z0-9 ]{0,6}(error)?[a-z0-9 ]{0,6}){0,3}", 0..60)
    ) {
        let text = lines.join("\n");
        let compacted = compact(&text);
        let errors = lines.iter().map(|l| l.trim_end()).filter(|l| l.contains("error"));
        assert_lines_in_order(errors, &compacted, "compact");
    }

    #[test]
    fn bound_never_exceeds_the_budget(text in noisy_text(), budget in 0usize..600) {
        let shaped = bound(&text, budget);
        prop_assert_eq!(shaped.truncated, shaped.omitted_bytes > 0);
        if text.len() <= budget {
            prop_assert_eq!(&shaped.text, &text);
        } else {
            prop_assert!(shaped.text.len() <= budget);
        }
    }

    #[test]
    fn shape_bytes_never_exceeds_the_budget(
        head in proptest::collection::vec(any::<u8>(), 0..300),
        tail in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        skipped in prop_oneof![Just(0u64), 0u64..1 << 40, Just(u64::MAX)],
        budget in 0usize..400,
        compress in any::<bool>(),
    ) {
        let shaped = shape_bytes(&head, tail.as_deref(), skipped, ShapeOptions { budget, compress });
        prop_assert!(shaped.text.len() <= budget);
        prop_assert_eq!(shaped.truncated, shaped.omitted_bytes > 0);
        prop_assert!(shaped.omitted_bytes >= skipped);
    }
}

proptest! {
    #![proptest_config(fixed(24))]

    #[test]
    fn shape_file_never_exceeds_the_budget(
        pattern in proptest::collection::vec(any::<u8>(), 1..64),
        repeats in prop_oneof![1usize..50, 4000usize..12_000],
        budget in 0usize..5000,
        compress in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, pattern.repeat(repeats)).unwrap();
        let shaped = shape_file(&path, ShapeOptions { budget, compress }).unwrap();
        prop_assert!(shaped.text.len() <= budget);
    }
}
