//! Output shaped for agents: compacted by default, raw on request, and
//! bounded to a byte budget with an explicit omission line.

use serde_json::json;

use crate::fixture::*;

/// Colours, a progress line redrawn with `\r`, and a run of lines that
/// differ only in a number.
const NOISY: &str = r#"printf '\033[32mgreen\033[0m\n'
for i in 1 2 3 4 5; do printf '\rprogress %d%%' $((i * 20)); done; printf '\n'
for i in $(seq 1 10); do echo "fetched crate $i"; done
echo "error: one real problem"
echo done"#;

#[test]
fn output_is_compacted_by_default_and_raw_on_request() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let shaped = server.call("bash", json!({"command": NOISY, "wait_ms": 60_000}));
    assert_eq!(shaped["exit_code"], 0);
    assert_eq!(
        shaped["output"],
        "green\nprogress 100%\nfetched crate 10\n  [×10 similar lines]\nerror: one real problem\ndone\n"
    );
    assert_eq!(shaped["output_truncated"], false, "folding is not omission");

    let raw = server.call(
        "bash",
        json!({"command": NOISY, "wait_ms": 60_000, "compressed": false}),
    );
    let text = raw["output"].as_str().unwrap();
    assert!(text.starts_with("\u{1b}[32mgreen\u{1b}[0m\n"), "{text:?}");
    assert!(text.contains("\rprogress 20%\rprogress 40%"), "{text:?}");
    for i in 1..=10 {
        assert!(text.contains(&format!("fetched crate {i}\n")), "{text:?}");
    }
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn output_is_bounded_with_an_omission_line() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let result = server.call(
        "bash",
        json!({
            "command": "seq 1 100000",
            "wait_ms": 60_000,
            "compressed": false,
            "output_bytes": 2_000,
        }),
    );
    let text = result["output"].as_str().unwrap();
    assert!(text.len() <= 2_000, "{} bytes", text.len());
    assert!(text.starts_with("1\n2\n3\n"), "the head is kept: {text:?}");
    assert!(
        text.ends_with("99999\n100000\n"),
        "the tail is kept: {text:?}"
    );
    let marker = text
        .lines()
        .find(|l| l.starts_with("[… ") && l.ends_with(" bytes omitted …]"))
        .unwrap_or_else(|| panic!("no omission line in {text:?}"));
    let omitted: u64 = marker
        .trim_start_matches("[… ")
        .trim_end_matches(" bytes omitted …]")
        .parse()
        .expect("a byte count");
    assert_eq!(result["output_truncated"], true);
    assert_eq!(result["output_omitted_bytes"], omitted);
    // `seq 1 100000` prints 588,895 bytes; all but what is shown is omitted.
    let shown: u64 = text
        .lines()
        .filter(|l| *l != marker)
        .map(|l| l.len() as u64 + 1)
        .sum();
    assert_eq!(shown + omitted, 588_895);

    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn compacted_output_folds_numbered_lines_and_stays_bounded() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let result = server.call(
        "bash",
        json!({"command": "seq 1 100000", "wait_ms": 60_000, "output_bytes": 2_000}),
    );
    let text = result["output"].as_str().unwrap();
    assert!(text.len() <= 2_000, "{} bytes", text.len());
    assert!(text.contains(" similar lines]\n"), "{text:?}");
    assert!(
        text.ends_with("100000\n  [×21845 similar lines]\n"),
        "the last line is kept: {text:?}"
    );
    assert_eq!(result["output_truncated"], true, "only windows are read");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn compacted_large_output_shows_only_whole_lines() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let result = server.call(
        "bash",
        json!({
            "command": "for i in $(seq 1 30000); do echo \"line $i of the log\"; done",
            "wait_ms": 60_000,
            "output_bytes": 2_000,
        }),
    );
    let text = result["output"].as_str().unwrap();
    for line in text.lines() {
        let is_marker = line.starts_with("  [×") || line.starts_with("[… ");
        let is_whole = line
            .strip_prefix("line ")
            .and_then(|l| l.strip_suffix(" of the log"))
            .is_some_and(|n| n.parse::<u32>().is_ok());
        assert!(
            is_marker || is_whole,
            "{line:?} is not a line of the output: {text:?}"
        );
    }
    assert_eq!(server.close().code(), Some(0));
}
