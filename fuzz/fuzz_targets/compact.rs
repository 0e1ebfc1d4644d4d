//! Arbitrary output through `bgtask_core::compact`: no function may panic,
//! and the invariants compact.rs documents must hold.
//!
//! Input layout: an 8-byte header, then the output bytes. A short input
//! reads as if padded with zeros.
//! - byte 0, flags: 1 = compress, 2 = budget near `usize::MAX`,
//!   4 = `shape_bytes` gets a tail window, 8 = bytes were skipped between
//!   the windows, 16 = almost `u64::MAX` bytes were skipped;
//! - bytes 1..3: budget (u16, little endian);
//! - bytes 3..5: where the head window ends (mod the output's length + 1);
//! - bytes 5..8: skipped bytes (u24).

#![no_main]

use std::collections::HashSet;

use bgtask_core::compact::{bound, compact, render, shape_bytes, ShapeOptions, Shaped};
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 8;

/// compact.rs's problem words; it matches them ignoring ASCII case.
const PROBLEM_WORDS: [&str; 7] = [
    "error",
    "warn",
    "fail",
    "panic",
    "fatal",
    "exception",
    "traceback",
];

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let header_len = data.len().min(HEADER);
    header[..header_len].copy_from_slice(&data[..header_len]);
    let output = &data[header_len..];
    let flags = header[0];
    let small_budget = usize::from(u16::from_le_bytes([header[1], header[2]]));
    let budget = match flags & 2 {
        0 => small_budget,
        _ => usize::MAX - small_budget,
    };
    let split = usize::from(u16::from_le_bytes([header[3], header[4]])) % (output.len() + 1);
    let small_skip = u64::from(u32::from_le_bytes([header[5], header[6], header[7], 0]));
    let skipped = match flags & (8 | 16) {
        0 => 0,
        8 => small_skip,
        _ => u64::MAX - small_skip,
    };

    let text = String::from_utf8_lossy(output);
    let rendered = render(&text);
    let compacted = compact(&text);
    check_problem_lines_survive(&rendered, &compacted);
    check_only_markers_are_new(&rendered, &compacted);
    check_bound(&text, budget);
    check_bound(&compacted, budget);

    let opts = ShapeOptions {
        budget,
        compress: flags & 1 != 0,
    };
    let shaped = match flags & 4 {
        0 => shape_bytes(output, None, skipped, opts),
        _ => shape_bytes(&output[..split], Some(&output[split..]), skipped, opts),
    };
    check_shaped(&shaped, budget);
    assert!(
        shaped.omitted_bytes >= skipped,
        "skipped bytes are never shown: {} omitted, {skipped} skipped",
        shaped.omitted_bytes
    );
});

fn mentions_problem(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    PROBLEM_WORDS.iter().any(|word| lower.contains(word))
}

/// Every rendered line that mentions a problem is in `compacted`, verbatim
/// and in order.
fn check_problem_lines_survive(rendered: &str, compacted: &str) {
    let mut kept = compacted.split('\n');
    for line in rendered.split('\n').filter(|l| mentions_problem(l)) {
        assert!(
            kept.any(|k| k == line),
            "problem line {line:?} lost or out of order in {compacted:?}"
        );
    }
}

/// Folding only drops lines and adds count markers: every other line of
/// `compacted` is a line of `rendered`, unchanged.
fn check_only_markers_are_new(rendered: &str, compacted: &str) {
    let lines: HashSet<&str> = rendered.split('\n').collect();
    for line in compacted.split('\n') {
        assert!(
            lines.contains(line) || is_fold_marker(line),
            "{line:?} is neither a rendered line nor a marker"
        );
    }
}

/// `  [×N identical lines]` or `  [×N similar lines]`, N ≥ 3.
fn is_fold_marker(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  [×") else {
        return false;
    };
    let Some(rest) = rest
        .strip_suffix(" identical lines]")
        .or_else(|| rest.strip_suffix(" similar lines]"))
    else {
        return false;
    };
    rest.parse::<usize>().is_ok_and(|n| n >= 3)
}

fn check_bound(text: &str, budget: usize) {
    let shaped = bound(text, budget);
    check_shaped(&shaped, budget);
    if text.len() <= budget {
        assert_eq!(shaped.text, text, "text that fits is returned unchanged");
    } else {
        assert!(
            shaped.truncated,
            "{} bytes cannot fit in {budget}",
            text.len()
        );
        assert!(shaped.omitted_bytes <= text.len() as u64);
    }
}

fn check_shaped(shaped: &Shaped, budget: usize) {
    assert!(
        shaped.text.len() <= budget,
        "{} bytes over a budget of {budget}",
        shaped.text.len()
    );
    assert_eq!(shaped.truncated, shaped.omitted_bytes > 0);
}
