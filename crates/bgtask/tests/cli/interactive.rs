//! Interactive tasks (issue 18), with real programs: a stdin pipe or a
//! pseudo-terminal held by the task's monitor, `send`, `signal`,
//! `screen` and `resize`.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixture::*;

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn logs(bg: &Bg, id: &str) -> String {
    bg.run(&["logs", id]).ok().stdout
}

fn screen(bg: &Bg, id: &str) -> Value {
    bg.run(&["screen", "--json", id]).ok().json()
}

fn screen_text(bg: &Bg, id: &str) -> String {
    bg.run(&["screen", id]).ok().stdout
}

#[test]
fn a_python_repl_is_driven_by_send() {
    if !has("python3") {
        eprintln!("skipped: no python3 here");
        return;
    }
    let bg = Bg::new();
    let id = bg.spawn(&["--stdin"], "python3 -i -q");
    bg.run(&["send", &id, "6*7", "--key", "enter"]).ok();
    wait_until("the REPL's answer", || logs(&bg, &id).contains("42"));
    bg.run(&["send", &id, "print('bye')\n", "--eof"]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["stdin"], true);
    assert!(logs(&bg, &id).contains("bye"));
}

#[test]
fn read_prompts_are_answered_on_a_pipe_and_under_a_terminal() {
    let bg = Bg::new();
    let piped = bg.spawn(
        &["--stdin"],
        "read -r name; read -r more; echo \"hello $name, $more\"",
    );
    bg.run(&["send", &piped, "ada", "--key", "enter"]).ok();
    bg.run(&["send", &piped, "again", "--key", "enter"]).ok();
    assert_eq!(bg.wait(&piped)["status"], "completed");
    assert_eq!(logs(&bg, &piped), "hello ada, again\n");

    let id = bg.spawn(
        &["--pty"],
        "read -r -p 'name? ' n; read -r -p 'sure? [y/N] ' a; echo \"hello $n ($a)\"",
    );
    wait_until("the first prompt", || {
        screen_text(&bg, &id).contains("name?")
    });
    bg.run(&["send", &id, "bob", "--key", "enter"]).ok();
    wait_until("the second prompt", || {
        screen_text(&bg, &id).contains("sure?")
    });
    bg.run(&["send", &id, "y", "--key", "enter"]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["pty"], serde_json::json!({"rows": 24, "cols": 80}));
    // One raw stream: the terminal's echo and carriage returns included.
    assert!(
        logs(&bg, &id).contains("hello bob (y)\r\n"),
        "{:?}",
        logs(&bg, &id)
    );
    // The screen of an ended task is its output replayed.
    let last = screen(&bg, &id);
    assert_eq!(last["lines"][2], "hello bob (y)", "{last}");
}

#[test]
fn ctrl_c_under_a_terminal_ends_a_sleep() {
    let bg = Bg::new();
    let id = bg.spawn(&["--pty"], "sleep 300");
    bg.run(&["send", &id, "--key", "ctrl-c"]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["signal"], "SIGINT");
    assert_eq!(ended["exit_code"], 130);
    assert_eq!(ended["reason"], "terminated by SIGINT");
}

#[test]
fn a_signal_reaches_a_shell_that_traps_it_and_is_recorded() {
    let bg = Bg::new();
    let id = bg.spawn(
        &[],
        "trap 'echo got usr1; exit 3' USR1; echo ready; while :; do sleep 0.05; done",
    );
    wait_until("the trap to be set", || logs(&bg, &id).contains("ready"));
    let signalled = bg.run(&["signal", "--json", &id, "USR1"]).ok().json();
    assert_eq!(signalled["signals_sent"], serde_json::json!(["SIGUSR1"]));
    let ended = bg.wait(&id);
    assert_eq!(ended["exit_code"], 3, "{ended}");
    assert!(logs(&bg, &id).contains("got usr1"));
}

#[test]
fn an_end_by_a_sent_signal_says_who_sent_it() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let run = bg.run(&["signal", &id, "int"]).ok();
    assert_eq!(run.stdout, format!("sent SIGINT to the task {id}\n"));
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["exit_code"], 130);
    assert_eq!(ended["reason"], "ended by SIGINT sent with bgtask signal");
    assert_eq!(ended["signals_sent"], serde_json::json!(["SIGINT"]));
}

#[test]
fn leader_signals_only_the_shell() {
    let bg = Bg::new();
    let child_pid = bg.path("child.pid");
    let command = format!(
        "trap 'echo shell got it' USR1; sleep 300 & echo $! > {}; wait; wait",
        child_pid.display()
    );
    let id = bg.spawn(&[], &command);
    let pid: u32 = read_when_ready(&child_pid).parse().unwrap();
    bg.run(&["signal", "--leader", &id, "10"]).ok();
    wait_until("the shell's trap", || {
        logs(&bg, &id).contains("shell got it")
    });
    assert!(is_running(pid), "the shell's child got the signal too");
    bg.run(&["kill", &id]).ok();
}

#[test]
fn tput_sees_the_new_size_after_a_resize() {
    if !has("tput") {
        eprintln!("skipped: no tput here");
        return;
    }
    let bg = Bg::new();
    let id = bg.spawn(
        &["--pty", "--size", "20x70"],
        "tput cols; read -r -p 'go? ' x; tput cols; tput lines",
    );
    wait_until("the prompt", || screen_text(&bg, &id).contains("go?"));
    bg.run(&["resize", &id, "30x132"]).ok();
    assert_eq!(
        bg.status(&id)["pty"],
        serde_json::json!({"rows": 30, "cols": 132})
    );
    bg.run(&["send", &id, "--key", "enter"]).ok();
    assert_eq!(bg.wait(&id)["status"], "completed");
    let out = logs(&bg, &id);
    assert!(out.starts_with("70\r\n"), "{out:?}");
    assert!(out.ends_with("132\r\n30\r\n"), "{out:?}");
}

#[test]
fn less_shows_its_screen_and_q_quits_it() {
    if !has("less") {
        eprintln!("skipped: no less here");
        return;
    }
    let bg = Bg::new();
    let file = bg.path("numbers.txt");
    let numbers: String = (1..=100).map(|n| format!("line {n}\n")).collect();
    std::fs::write(&file, numbers).unwrap();
    let id = bg.spawn(
        &["--pty", "--size", "10x40"],
        &format!("less {}", file.display()),
    );
    wait_until("less to draw its first page", || {
        let screen = screen(&bg, &id);
        screen["lines"][0] == "line 1" && screen["lines"][8] == "line 9"
    });
    let shown = screen(&bg, &id);
    assert_eq!(
        (shown["rows"].as_u64(), shown["cols"].as_u64()),
        (Some(10), Some(40))
    );
    assert!(
        shown["lines"][9].as_str().unwrap().contains("numbers.txt"),
        "{shown}"
    );
    // Page down, then quit.
    bg.run(&["send", &id, " "]).ok();
    wait_until("the next page", || {
        screen(&bg, &id)["lines"][0] == "line 10"
    });
    bg.run(&["send", &id, "q"]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
}

#[test]
fn a_cursor_position_query_is_answered() {
    let bg = Bg::new();
    // The reply arrives on the terminal's input, as a real terminal's would.
    let id = bg.spawn(
        &["--pty"],
        "stty -echo raw; printf 'abc\\033[6n'; dd bs=1 count=6 2>/dev/null | od -c | head -1",
    );
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
    let out = logs(&bg, &id);
    assert!(out.contains("033   [   1   ;   4   R"), "{out:?}");
}

#[test]
fn input_reaches_the_task_after_its_starter_was_sigkilled() {
    let bg = Bg::new();
    let mut starter = bg
        .cmd()
        .args([
            "run",
            "--json",
            "--stdin",
            "--wait",
            "60s",
            "--",
            "read -r x; echo \"got $x\"",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the task to run", || {
        let tasks = bg.list_all();
        match tasks.first() {
            Some(t) if t["status"] == "running" => {
                id = t["task_id"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    starter.kill().unwrap();
    starter.wait().unwrap();
    bg.run(&["send", &id, "still here", "--key", "enter"]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(logs(&bg, &id), "got still here\n");
}

#[test]
fn a_send_that_does_not_fit_says_what_waits_and_input_is_never_stored() {
    let bg = Bg::new();
    let id = bg.spawn(&["--stdin"], "exec sleep 300");
    let secret = "s3cret-input-never-stored";
    bg.run(&["send", &id, secret]).ok();
    // More than a pipe holds (64 KiB), less than one argument may be.
    let big = "x".repeat(120 << 10);
    let run = bg.run(&["send", "--json", &id, &big]).ok();
    let sent = run.json();
    assert!(sent["queued"].as_u64().unwrap() > 0, "{sent}");
    assert_eq!(
        sent["written"].as_u64().unwrap() + sent["queued"].as_u64().unwrap(),
        120 << 10
    );
    // Later input waits behind it, in order, and the sender is told.
    let human = bg.run(&["send", &id, "more"]).ok();
    assert!(
        human.stderr.contains("4 of 4 bytes wait for the task"),
        "{human:?}"
    );
    for entry in std::fs::read_dir(&bg.home).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("bgtask.db") {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "input found in {:?}",
                entry.path()
            );
        }
    }
    bg.run(&["kill", &id]).ok();
}

#[test]
fn what_cannot_take_input_says_so() {
    let bg = Bg::new();
    let plain = bg.spawn(&[], "exec sleep 300");
    let run = bg.run(&["send", &plain, "hi"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("takes no input"), "{run:?}");
    let run = bg.run(&["resize", &plain, "10x10"]);
    assert!(
        run.stderr.contains("does not run under a terminal"),
        "{run:?}"
    );
    let run = bg.run(&["screen", &plain]);
    assert!(
        run.stderr.contains("does not run under a terminal"),
        "{run:?}"
    );
    let run = bg.run(&["signal", &plain, "NOPE"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("unknown signal"), "{run:?}");
    let run = bg.run(&["send", &plain]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = bg.run(&["run", "--size", "10x10", "--", "true"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = bg.run(&["run", "--pty", "--size", "0x10", "--", "true"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = bg.run(&["send", &plain, "--key", "hyper"]);
    assert!(run.stderr.contains("unknown key"), "{run:?}");
    assert_eq!(bg.status(&plain)["status"], "running");
    bg.run(&["kill", &plain]).ok();

    let ended = bg.spawn(&["--stdin"], "true");
    bg.wait(&ended);
    let run = bg.run(&["send", &ended, "late"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("has ended (completed)"), "{run:?}");
    let closed = bg.spawn(&["--stdin"], "exec sleep 300");
    bg.run(&["send", &closed, "--eof"]).ok();
    let run = bg.run(&["send", &closed, "after"]);
    assert!(run.stderr.contains("input is closed"), "{run:?}");
    bg.run(&["kill", &closed]).ok();
}

/// 512 KiB of text (multi-byte characters included): more than one
/// command-line argument may hold, less than the 1 MiB a send takes.
fn big_payload() -> String {
    let line = "0123456789 abcdefghij ÄÖÜ ✓ ";
    let mut text = String::new();
    for i in 0u64.. {
        let next = format!("{i:08} {line}\n");
        if text.len() + next.len() > 512 << 10 {
            break;
        }
        text.push_str(&next);
    }
    text
}

fn sha256(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn send_reads_its_text_from_a_file_or_stdin_intact() {
    let bg = Bg::new();
    let payload = big_payload();
    let source = bg.path("payload.txt");
    std::fs::write(&source, &payload).unwrap();
    let want = sha256(&source);

    // From a file, then closed: the task's copy has the same checksum.
    let copy = bg.path("from-file.txt");
    let id = bg.spawn(&["--stdin"], &format!("cat > '{}'", copy.display()));
    let run = bg
        .run(&["send", &id, "--file", source.to_str().unwrap(), "--eof"])
        .ok();
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(bg.wait(&id)["status"], "completed");
    assert_eq!(sha256(&copy), want);

    // From this process's stdin (`--stdin`, and `--file -`).
    for flag in [&["--stdin"][..], &["--file", "-"][..]] {
        let copy = bg.path("from-stdin.txt");
        let id = bg.spawn(&["--stdin"], &format!("cat > '{}'", copy.display()));
        let mut cmd = bg.cmd();
        cmd.args(["send", &id])
            .args(flag)
            .arg("--eof")
            .stdin(std::fs::File::open(&source).unwrap());
        bg.run_with(&mut cmd).ok();
        assert_eq!(bg.wait(&id)["status"], "completed", "{flag:?}");
        assert_eq!(sha256(&copy), want, "{flag:?}");
    }
}

#[test]
fn send_from_a_file_refuses_what_it_cannot_send() {
    let bg = Bg::new();
    let id = bg.spawn(&["--stdin"], "exec sleep 300");
    let big = bg.path("big.txt");
    std::fs::write(&big, "x".repeat((1 << 20) + 1)).unwrap();
    let run = bg.run(&["send", &id, "--file", big.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("at most 1048576 bytes per send"),
        "{run:?}"
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");

    let binary = bg.path("binary.bin");
    std::fs::write(&binary, b"ok\xff\xfe").unwrap();
    let run = bg.run(&["send", &id, "--file", binary.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not UTF-8 text"), "{run:?}");

    let missing = bg.path("missing.txt");
    let run = bg.run(&["send", &id, "--file", missing.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.txt"), "{run:?}");

    let run = bg.run(&["send", &id, "text", "--stdin"]);
    assert_eq!(run.code, 2, "{run:?}");

    // Too much through stdin too, and nothing of it reached the task.
    let mut cmd = bg.cmd();
    cmd.args(["send", &id, "--stdin"])
        .stdin(std::fs::File::open(&big).unwrap());
    let run = bg.run_with(&mut cmd);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("at most 1048576 bytes per send"),
        "{run:?}"
    );
    assert_eq!(bg.status(&id)["status"], "running");
    bg.run(&["kill", &id]).ok();
}
