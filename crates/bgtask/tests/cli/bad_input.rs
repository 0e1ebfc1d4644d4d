//! Bad input: one clear line on stderr, the documented exit code, no panic,
//! and nothing stored is lost or changed.

use crate::fixture::*;

#[track_caller]
fn assert_rejected(run: &Run, code: i32, mentions: &str) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:?}");
    assert!(
        run.stderr.contains(mentions),
        "stderr should mention {mentions:?}: {run:?}"
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{run:?}"
    );
}

#[test]
fn bad_input_is_refused_with_the_documented_exit_codes() {
    let bg = Bg::new();
    let existing = bg.spawn(&[], "echo kept");
    bg.wait(&existing);
    let before = bg.list_all();
    let file = bg.path("a-file");
    std::fs::write(&file, "").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["run", "--cwd", "/nonexistent/dir", "--", "true"],
            2,
            "/nonexistent/dir",
        ),
        (
            &["run", "--cwd", file.to_str().unwrap(), "--", "true"],
            2,
            "not a directory",
        ),
        (&["run", "--", ""], 2, "empty"),
        (&["run", "--", "  "], 2, "empty"),
        (
            &["run", "--timeout", "5 parsecs", "--", "true"],
            2,
            "invalid duration",
        ),
        (
            &["run", "--idle-timeout", "0", "--", "true"],
            2,
            "use \"none\"",
        ),
        (
            &["run", "--max-output", "lots", "--", "true"],
            2,
            "invalid size",
        ),
        (&["run", "--max-output", "10", "--", "true"], 2, "too small"),
        (
            &["run", "--env", "NOVALUE", "--", "true"],
            2,
            "NOVALUE is not set",
        ),
        (&["run", "--env", "=x", "--", "true"], 2, "empty"),
        (&["run"], 2, "COMMAND"),
        (&["status", "bg-00000000000000aa"], 3, "bg-00000000000000aa"),
        (&["status", "../../etc/passwd"], 3, "invalid task id"),
        (&["logs", "bg-00000000000000aa"], 3, "no task"),
        (&["kill", "bg-00000000000000aa"], 3, "no task"),
        (&["wait", "bg-00000000000000aa"], 3, "no task"),
        (&["list", "--status", "sleeping"], 2, "unknown status"),
        (
            &["kill", "--grace", "soon", &existing],
            2,
            "invalid duration",
        ),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, mentions) in cases {
        let run = bg.run(args);
        assert_rejected(&run, *code, mentions);
    }
    assert_eq!(bg.list_all(), before, "refused commands changed nothing");
    let unreadable = bg.path("locked");
    std::fs::create_dir(&unreadable).unwrap();
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // Root may enter any directory; only check when the permission bites.
    if std::fs::read_dir(&unreadable).is_err() {
        let run = bg.run(&["run", "--cwd", unreadable.to_str().unwrap(), "--", "true"]);
        assert_rejected(&run, 2, "locked");
    }
}

#[test]
fn our_errors_are_one_line() {
    let bg = Bg::new();
    for args in [
        &["run", "--cwd", "/nonexistent", "--", "true"][..],
        &["status", "bg-00000000000000aa"][..],
        &["ack", "bg-00000000000000aa"][..],
    ] {
        let run = bg.run(args);
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stderr.starts_with("bgtask: "), "{run:?}");
    }
}

#[test]
fn env_values_never_reach_the_store_or_the_output_of_bgtask() {
    let bg = Bg::new();
    let secret = "s3cr3t-value-7f2c";
    let run = bg
        .run(&[
            "run",
            "--json",
            "--env",
            &format!("API_TOKEN={secret}"),
            "--",
            "test -n \"$API_TOKEN\"",
        ])
        .ok();
    let id = run.json()["task_id"].as_str().unwrap().to_owned();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "the value reached the command");
    assert_eq!(task["env_keys"][0], "API_TOKEN");
    let mut seen = run.stdout.clone();
    for args in [
        &["status", "--json", &id][..],
        &["list", "--json"][..],
        &["list"][..],
        &["completions"][..],
    ] {
        seen.push_str(&bg.run(args).ok().stdout);
    }
    assert!(!seen.contains(secret), "the value leaked into CLI output");
    for entry in std::fs::read_dir(&bg.home).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(
                !hay.contains(secret),
                "the value leaked into {}",
                path.display()
            );
        }
    }
}

#[test]
fn run_parses_the_same_with_global_options_anywhere() {
    // `bgtask run …` has a parser of its own (faster); anything it does
    // not take goes to the full parser, whose messages users know.
    let bg = Bg::new();
    for args in [
        &["run", "--json", "--wait", "10s", "--", "echo", "a"][..],
        &["--json", "run", "--wait", "10s", "--", "echo", "a"],
        &[
            "run",
            "--wait",
            "10s",
            "--json",
            "--session",
            "other",
            "--",
            "echo",
            "a",
        ],
    ] {
        let task = bg.run(args).ok().json();
        assert_eq!(task["status"], "completed", "{args:?}: {task}");
        assert_eq!(task["command"], "echo a", "{args:?}: {task}");
    }
    assert_eq!(bg.list_all().len(), 3);
    let help = bg.run(&["run", "--help"]).ok();
    assert!(help.stdout.contains("Usage: bgtask run"), "{help:?}");
    assert!(
        help.stdout.contains("--home"),
        "global options are listed: {help:?}"
    );
    let bad = bg.run(&["run", "--wait", "soon", "--", "true"]);
    assert_rejected(&bad, 2, "invalid value 'soon' for '--wait <DUR>'");
    let unknown = bg.run(&["run", "--bogus", "--", "true"]);
    assert_rejected(&unknown, 2, "unexpected argument '--bogus'");
    assert!(unknown.stderr.contains("usage: bgtask run"), "{unknown:?}");
}

#[test]
fn huge_limits_are_refused_or_kept_never_wrapped() {
    let bg = Bg::new();
    for (args, mentions) in [
        (
            &["run", "--timeout", "200000000000d", "--", "true"][..],
            "too long",
        ),
        (
            &["run", "--idle-timeout", "36501d", "--", "true"],
            "too long",
        ),
        (
            &["run", "--max-output", "9223372036854775808", "--", "true"],
            "too large",
        ),
        (
            &["run", "--max-output", "8388608TiB", "--", "true"],
            "too large",
        ),
        (
            &[
                "kill",
                "--grace",
                "18446744073709551615ms",
                "bg-00000000000000aa",
            ],
            "too long",
        ),
    ] {
        let run = bg.run(args);
        assert_rejected(&run, 2, mentions);
    }
    assert!(!bg.home.join("bgtask.db").exists() || bg.list_all().is_empty());
    // The largest accepted limits are stored as given and do not fire.
    let task = bg
        .run(&[
            "run",
            "--json",
            "--wait",
            "20s",
            "--timeout",
            "36500d",
            "--idle-timeout",
            "36500d",
            "--max-output",
            "1048576TiB",
            "--",
            "echo fine",
        ])
        .ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["timeout_ms"], 3_153_600_000_000u64);
    assert_eq!(task["idle_timeout_ms"], 3_153_600_000_000u64);
    assert_eq!(task["max_output_bytes"], 1u64 << 60);
    let id = task["task_id"].as_str().unwrap();
    bg.run(&["wait", "--timeout", "36500d", id]).ok();
}

#[test]
fn what_only_a_local_monitor_does_is_refused_for_slurm_tasks() {
    let bg = Bg::new();
    for (flags, names) in [
        (&["--stdin"][..], "stdin"),
        (&["--pty"][..], "pseudo-terminal"),
        (&["--ready-port", "3000"][..], "readiness"),
        (&["--sandbox", "workspace"][..], "sandbox"),
    ] {
        let mut args = vec!["run", "--executor", "slurm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        let run = bg.run(&args);
        assert_rejected(&run, 2, names);
        assert!(
            run.stderr.contains("not available for Slurm tasks"),
            "{run:?}"
        );
    }
    assert!(bg.list_all().is_empty(), "nothing may be stored");
}
