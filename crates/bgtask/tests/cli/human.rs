//! Human output for people (issue 20 items 5–7): cleaned previews, a
//! `list` that fits the terminal and follows changes, `wait` reporting
//! each end, `logs --follow`'s summary and exit code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;

use crate::fixture::*;

/// A task that prints a coloured word and a progress bar redrawn with
/// `\r`, a backspace, and an erase-line.
const NOISY: &str = "printf 'abcX\\bd \\033[1;32mgreen\\033[0m done\\n'; \
     for i in 10 50 100; do printf '\\rprogress %d%%' $i; done; printf '\\n'; \
     printf 'junk\\r\\033[2Kfinal line\\n'";

#[test]
fn previews_show_the_final_state_of_progress_bars_without_colours_and_raw_keeps_bytes() {
    let bg = Bg::new();
    let id = bg.spawn(&[], NOISY);
    let waited = bg.run(&["wait", &id]).ok().stdout;
    let status = bg.run(&["status", &id]).ok().stdout;
    let completions = bg.run(&["completions"]).ok().stdout;
    // The output part: after `output:` in status, the indented preview
    // lines in wait and completions (the command line is shown escaped).
    let status_output = status.split_once("output:\n").unwrap().1.to_owned();
    let indented = |text: &str| -> String {
        text.lines()
            .filter(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect()
    };
    for (what, text) in [
        ("wait", &indented(&waited)),
        ("status", &status_output),
        ("completions", &indented(&completions)),
    ] {
        assert!(text.contains("progress 100%"), "{what}: {text:?}");
        assert!(!text.contains("progress 10%"), "{what}: {text:?}");
        assert!(text.contains("abcd green done"), "{what}: {text:?}");
        assert!(text.contains("final line"), "{what}: {text:?}");
        assert!(!text.contains("junk"), "{what}: {text:?}");
        // No escape sequence, raw or escaped, in the output part.
        assert!(!text.contains("\\x1b[1;32m"), "{what}: {text:?}");
        assert!(!text.contains("\\x0d"), "{what}: {text:?}");
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "{what}: {text:?}"
        );
    }
    // --raw shows every byte, escaped.
    for args in [
        &["status", "--raw", &id][..],
        &["completions", "--raw"],
        &["wait", "--raw", &id],
    ] {
        let raw = bg.run(args).ok().stdout;
        assert!(raw.contains("d \\x1b[1;32mgreen"), "{args:?}: {raw:?}");
        assert!(!raw.contains('\x1b'), "{args:?}: {raw:?}");
    }
    assert!(bg
        .run(&["status", "--raw", &id])
        .ok()
        .stdout
        .contains("\\x0dprogress 10%\\x0dprogress 50%"));
    // --json and logs are unchanged.
    let logs = bg.run(&["logs", &id]).ok().stdout;
    assert!(logs.contains("d \x1b[1;32mgreen") && logs.contains("\rprogress 50%"));
    assert_eq!(bg.status(&id)["output_tail"], logs.as_str());
}

fn lines_within(text: &str, width: usize) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= width,
            "line over {width} columns: {line:?}\n{text}"
        );
    }
}

#[test]
fn list_fits_the_width_and_shows_age_duration_session_and_a_short_cwd() {
    let bg = Bg::new();
    let long = format!("echo {}", "x".repeat(200));
    let done = bg.spawn(&[], &long);
    bg.wait(&done);
    let project = bg.path("projects/some-rather-long-project-name/crates/inner-most");
    std::fs::create_dir_all(&project).unwrap();
    let gate = bg.gate("list");
    let theirs = bg.start(
        bg.cmd_in("agent-session")
            .arg("run")
            .arg("--cwd")
            .arg(&project)
            .args(["--", &gate.hold()]),
    );
    let list = |columns: &str, args: &[&str]| {
        bg.run_with(bg.cmd().env("COLUMNS", columns).arg("list").args(args))
            .ok()
            .stdout
    };

    let narrow = list("80", &[]);
    lines_within(&narrow, 80);
    let header = narrow.lines().next().unwrap();
    for column in ["ID", "STATUS", "EXIT", "AGE", "DURATION", "COMMAND"] {
        assert!(header.contains(column), "{narrow}");
    }
    assert!(
        !header.contains("SESSION") && !header.contains("CWD"),
        "{narrow}"
    );
    assert!(
        narrow.contains("completed") && narrow.contains('…'),
        "{narrow}"
    );

    let all = list("80", &["--all-sessions"]);
    lines_within(&all, 80);
    assert!(all.lines().next().unwrap().contains("SESSION"), "{all}");
    assert!(all.contains("agent-") && all.contains("test"), "{all}");
    // The fixture's HOME is its temp dir: both cwds start with `~`, and a
    // long one is cut in the middle.
    let row = all.lines().find(|l| l.contains("running")).unwrap();
    assert!(row.contains("~/") && row.contains('…'), "{all}");
    // The id column may shrink, but what it shows is a usable prefix.
    let shown_id = row.split_whitespace().next().unwrap();
    assert!(theirs.starts_with(shown_id), "{row}");
    bg.run(&["status", shown_id]).ok();

    // A wide terminal gets the working directory (in full) for one session.
    let wide = list("200", &["--all-sessions"]);
    lines_within(&wide, 200);
    assert!(
        wide.contains("~/projects/some-rather-long-project-name/crates/inner-most"),
        "{wide}"
    );
    let wide_one = list("200", &[]);
    assert!(
        wide_one.lines().next().unwrap().contains("CWD"),
        "{wide_one}"
    );
    assert!(wide_one.contains(&"x".repeat(100)), "{wide_one}");
    gate.open();
    bg.wait(&theirs);
}

/// Reads a child's stdout lines on a thread.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`, returning every line read so far.
#[track_caller]
fn read_until(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !seen.iter().any(|l| l.contains(needle)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {needle:?}; read: {seen:#?}"),
        }
    }
}

fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    child.wait().unwrap()
}

#[test]
fn list_watch_redraws_when_a_task_starts_and_ends_and_stops_on_interrupt() {
    let bg = Bg::new();
    let first = bg.spawn(&[], "true");
    bg.wait(&first);
    let mut watch = bg
        .cmd()
        .args(["list", "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut watch);
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, &first);
    let gate = bg.gate("watch");
    let second = bg.spawn(&[], &gate.hold());
    read_until(&rx, &mut seen, &second);
    gate.open();
    bg.wait(&second);
    seen.clear();
    let deadline = std::time::Instant::now() + PATIENCE;
    // A redraw shows it completed.
    while !seen
        .iter()
        .any(|l| l.contains(&second) && l.contains("completed"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        seen.push(rx.recv_timeout(left).expect("a redraw after the end"));
    }
    // Into a pipe: plain text, no escape sequences.
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:?}");
    let status = interrupt(&mut watch);
    assert!(!status.success() || status.code() == Some(0), "{status:?}");
}

#[test]
fn wait_reports_each_task_as_it_ends_and_names_those_that_failed() {
    let bg = Bg::new();
    let (ga, gb) = (bg.gate("a"), bg.gate("b"));
    let a = bg.spawn(&[], &format!("{}; echo a-out", ga.hold()));
    let b = bg.spawn(&[], &format!("{}; echo b-out; exit 3", gb.hold()));
    let c = bg.spawn(&[], "echo c-out");
    bg.wait(&c);
    let mut wait = bg
        .cmd()
        .args(["wait", &a, &b, &c])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut wait);
    let mut seen = Vec::new();
    // c had ended already: reported at once, with its output.
    read_until(&rx, &mut seen, &c);
    read_until(&rx, &mut seen, "c-out");
    gb.open();
    read_until(&rx, &mut seen, &b);
    assert!(
        !seen.iter().any(|l| l.contains(&a)),
        "a is still running: {seen:?}"
    );
    read_until(&rx, &mut seen, "b-out");
    ga.open();
    read_until(&rx, &mut seen, "did not complete");
    let code = wait.wait().unwrap().code();
    assert_eq!(code, Some(1), "{seen:?}");
    let last = seen.last().unwrap();
    assert!(
        last.contains(&format!(
            "1 of 3 tasks did not complete: {b} (failed (exit 3))"
        )),
        "{seen:?}"
    );
    let order: Vec<usize> = [&c, &b, &a]
        .iter()
        .map(|id| {
            seen.iter()
                .position(|l| l.starts_with(id.as_str()))
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // All completed: exit 0 and a line saying so.
    let ok = bg.run(&["wait", &a, &c]).ok();
    assert!(ok.stdout.ends_with("all 2 tasks completed\n"), "{ok:?}");
}

#[test]
fn logs_follow_ends_with_a_summary_on_stderr_and_the_task_exit_code() {
    let bg = Bg::new();
    let gate = bg.gate("follow");
    let id = bg.spawn(
        &[],
        &format!("echo before; {}; echo after; exit 7", gate.hold()),
    );
    let mut follow = bg
        .cmd()
        .args(["logs", "--follow", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut follow);
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, "before");
    gate.open();
    let out = follow.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("bgtask: {id} failed (exit 7)")),
        "{stderr}"
    );
    read_until(&rx, &mut seen, "after");
    assert!(!seen.iter().any(|l| l.contains("bgtask:")), "{seen:?}");

    // A task that timed out: 124, as elsewhere.
    let slow = bg.spawn(&["--timeout", "300ms"], "sleep 30");
    let run = bg.run(&["logs", "-f", &slow]);
    assert_eq!(run.code, 124, "{run:?}");
    assert!(run.stderr.contains("timed_out"), "{run:?}");
}
