//! Errors are one line, and `--env` values reach the task without ever
//! being echoed or shown on a command line.

use std::process::Stdio;

use crate::fixture::*;

#[test]
fn usage_errors_are_one_line_with_the_usage() {
    let bg = Bg::new();
    for args in [
        &["run", "--bogus", "--", "true"][..],
        &["run", "--wait", "soon", "--", "true"],
        &["run"],
        &["frobnicate"],
        &["stat", "bg-00000000000000aa"],
        &["status"],
        &["kill", "--grace"],
        &[],
    ] {
        let run = bg.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("bgtask: "), "{args:?}: {run:?}");
        assert!(run.stderr.contains("--help"), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    let help = bg.run(&["kill", "--help"]).ok();
    assert!(help.stdout.contains("Usage: bgtask kill"), "{help:?}");
}

#[test]
fn a_malformed_env_pair_is_refused_without_echoing_its_value() {
    let bg = Bg::new();
    let secret = "tok-9f8e7d6c5b4a";
    for arg in [
        format!("={secret}"),
        format!(" ={secret}"),
        format!("A B={secret}"),
    ] {
        for args in [
            vec!["run".to_owned(), "--env".into(), arg.clone()],
            vec!["run".to_owned(), format!("--env={arg}")],
        ] {
            let mut args = args;
            args.extend(["--".into(), "true".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = bg.run(&args);
            assert_eq!(run.code, 2, "{run:?}");
            assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
            assert!(!run.stderr.contains(secret), "value echoed: {run:?}");
        }
    }
    assert!(!bg.home.join("bgtask.db").exists() || bg.list_all().is_empty());
}

#[test]
fn env_values_come_from_the_environment_or_a_file_by_name() {
    let bg = Bg::new();
    let file = bg.path("task.env");
    std::fs::write(
        &file,
        "# comment\n\nFROM_FILE=file value = kept\nOVERRIDDEN=file\nPASSED\r\n",
    )
    .unwrap();
    let run = bg
        .run_with(
            bg.cmd()
                .env("FROM_ENV", "env-secret-1")
                .env("PASSED", "env-secret-2")
                .args(["run", "--json", "--wait", "20s", "--env-file"])
                .arg(&file)
                .args(["--env", "FROM_ENV", "--env", "OVERRIDDEN=flag", "--"])
                .arg(r#"printf '%s|%s|%s|%s\n' "$FROM_FILE" "$FROM_ENV" "$PASSED" "$OVERRIDDEN""#),
        )
        .ok();
    let task = run.json();
    assert_eq!(task["status"], "completed", "{task}");
    let mut keys: Vec<&str> = task["env_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["FROM_ENV", "FROM_FILE", "OVERRIDDEN", "PASSED"]);
    let id = task["task_id"].as_str().unwrap();
    let out = bg.run(&["logs", id]).ok().stdout;
    assert_eq!(out, "file value = kept|env-secret-1|env-secret-2|flag\n");

    let missing = bg.run(&["run", "--env-file", "/nonexistent/x.env", "--", "true"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("/nonexistent/x.env"), "{missing:?}");
    std::fs::write(&file, "OK=1\n=hidden-value-42\n").unwrap();
    let bad_line = bg.run_with(
        bg.cmd()
            .args(["run", "--env-file"])
            .arg(&file)
            .args(["--", "true"]),
    );
    assert_eq!(bad_line.code, 2, "{bad_line:?}");
    assert!(bad_line.stderr.contains("line 2"), "{bad_line:?}");
    assert!(!bad_line.stderr.contains("hidden-value-42"), "{bad_line:?}");
}

#[test]
fn env_values_are_blanked_from_the_command_line_of_a_waiting_run() {
    let bg = Bg::new();
    let secret = "cmdline-secret-31337";
    let ready = bg.path("ready");
    let mut cli = bg
        .cmd()
        .args(["run", "--wait", "60s", "--env"])
        .arg(format!("TOKEN={secret}"))
        .arg(format!("--env=OTHER={secret}"))
        .arg("--")
        .arg(format!(
            "echo \"$TOKEN$OTHER\" > {}; exec sleep 60",
            ready.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the task runs, the CLI is long past its start-up.
    let seen = read_when_ready(&ready);
    assert_eq!(
        seen,
        format!("{secret}{secret}"),
        "the values reached the task"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", cli.id())).unwrap();
    let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(!shown.contains(secret), "visible in /proc: {shown}");
    assert!(
        shown.contains("TOKEN=") && shown.contains("--env=OTHER="),
        "{shown}"
    );
    for task in bg.list_all() {
        bg.run(&["kill", "--grace", "0s", task["task_id"].as_str().unwrap()])
            .ok();
    }
    cli.wait().unwrap();
}
