//! Human output never hands a task's escape sequences to the terminal;
//! `--json` and `logs` stay exact.

use crate::fixture::*;

#[test]
fn control_characters_are_escaped_in_human_output_only() {
    let bg = Bg::new();
    // A window-title change in the command itself, and in the output a
    // clipboard write (OSC 52), a colour and a bidi override.
    let command =
        ": '\x1b]0;title\x07'; printf '\\033]52;c;aGk=\\007\\033[31mred\\342\\200\\256x\\n'";
    let id = bg.spawn(&[], command);
    let waited = bg.run(&["wait", &id]).ok();
    let human = [
        waited.stdout,
        bg.run(&["status", &id]).ok().stdout,
        bg.run(&["list"]).ok().stdout,
        bg.run(&["completions"]).ok().stdout,
    ];
    for text in &human {
        assert!(
            !text.contains('\x1b'),
            "raw ESC reached the terminal: {text:?}"
        );
        assert!(
            !text.contains('\x07') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(
            text.contains("\\x1b]0;title\\x07"),
            "escaped, not dropped: {text:?}"
        );
    }
    // Output is cleaned of escape sequences (what a terminal would show),
    // and what is left that could drive the terminal is escaped.
    assert!(human[1].contains("red\\u{202e}x"), "{:?}", human[1]);
    let raw = bg.run(&["status", "--raw", &id]).ok().stdout;
    assert!(
        raw.contains("\\x1b]52;c;aGk=\\x07\\x1b[31mred\\u{202e}x"),
        "{raw:?}"
    );
    let logs = bg.run(&["logs", &id]).ok().stdout;
    assert_eq!(logs, "\x1b]52;c;aGk=\x07\x1b[31mred\u{202e}x\n");
    let task = bg.status(&id);
    assert_eq!(task["command"], command);
    assert_eq!(task["output_tail"], logs);
}
