//! Ids as people type them: unique prefixes (with or without `bg-`),
//! `last` / `-`, and several ids or `--all` for `kill` and `ack`.

use std::collections::HashMap;

use crate::fixture::*;

/// The hex digits of an id.
fn hex(id: &str) -> &str {
    id.strip_prefix("bg-").unwrap()
}

fn fails_with_code_3(bg: &Bg, args: &[&str], needle: &str) -> String {
    let run = bg.run(args);
    assert_eq!(run.code, 3, "{args:?}: {run:?}");
    assert!(run.stderr.contains(needle), "{args:?}: {run:?}");
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:?}");
    run.stderr
}

#[test]
fn a_unique_prefix_with_or_without_bg_and_last_name_a_task() {
    let bg = Bg::new();
    let first = bg.spawn(&[], "echo first");
    bg.wait(&first);
    // Another session's task is found by prefix too (ids are global), but
    // is never this session's `last`.
    let other = bg.run_id(bg.cmd_in("other").args(["run", "--", "true"]));
    let newest = bg.spawn(&[], "echo newest");
    bg.wait(&newest);
    for (typed, id) in [
        (&hex(&first)[..6], &first),
        (&first[..9], &first),
        (hex(&first), &first),
        (first.as_str(), &first),
        (&hex(&other)[..8], &other),
        ("last", &newest),
        ("-", &newest),
    ] {
        let status = bg.run(&["status", "--json", typed]).ok().json();
        assert_eq!(status["task_id"], id.as_str(), "{typed}");
    }
    let logs = bg.run(&["logs", &hex(&first)[..7]]).ok();
    assert_eq!(logs.stdout, "first\n");
    let waited = bg.run(&["wait", "--json", "last"]).ok().json();
    assert_eq!(waited[0]["task_id"], newest.as_str());
}

#[test]
fn an_ambiguous_prefix_is_an_error_listing_the_candidates() {
    let bg = Bg::new();
    // With 17 ids, two share their first hex digit.
    let mut by_digit: HashMap<char, Vec<String>> = HashMap::new();
    let shared = loop {
        let id = bg.run_id(bg.cmd().args(["run", "--no-notify", "--", "true"]));
        let digit = hex(&id).chars().next().unwrap();
        let ids = by_digit.entry(digit).or_default();
        ids.push(id);
        if ids.len() == 2 {
            break digit;
        }
    };
    let prefix = shared.to_string();
    let stderr = fails_with_code_3(&bg, &["status", &prefix], "ambiguous");
    for id in &by_digit[&shared] {
        assert!(stderr.contains(id.as_str()), "{id} not listed: {stderr}");
    }
    let prefixed = format!("bg-{prefix}");
    fails_with_code_3(&bg, &["kill", &prefixed], "ambiguous");
}

#[test]
fn an_unknown_prefix_and_a_malformed_id_are_errors_with_exit_3() {
    let bg = Bg::new();
    let id = bg.spawn(&["--no-notify"], "true");
    let unused = if hex(&id).starts_with('0') { "1" } else { "0" };
    let unknown = format!("{unused}abc");
    for command in ["status", "logs", "wait", "kill", "ack"] {
        fails_with_code_3(&bg, &[command, &unknown], "no task with id");
    }
    for bad in ["xyz", "bg-", "0123456789abcdef0", "ABC", "bg-12g4"] {
        fails_with_code_3(&bg, &["status", bad], "invalid task id");
    }
    // A session without tasks has no `last`.
    let run = bg.run_with(bg.cmd_in("empty").args(["status", "last"]));
    assert_eq!(run.code, 3, "{run:?}");
}

#[test]
fn kill_takes_several_ids_and_prints_each_final_state() {
    let bg = Bg::new();
    let a = bg.spawn(&[], "exec sleep 300");
    let b = bg.spawn(&[], "exec sleep 300");
    let ended = bg.spawn(&[], "true");
    bg.wait(&ended);
    let run = bg
        .run(&["kill", "--json", &a, &hex(&b)[..8], &ended])
        .ok()
        .json();
    let states: Vec<(&str, &str)> = run
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (a.as_str(), "killed"),
            (b.as_str(), "killed"),
            (ended.as_str(), "completed")
        ]
    );
    // One id still prints one object.
    let one = bg.run(&["kill", "--json", &a]).ok().json();
    assert_eq!(one["status"], "killed");
}

#[test]
fn kill_all_stops_this_sessions_live_tasks_and_all_sessions_widens_it() {
    let bg = Bg::new();
    let a = bg.spawn(&[], "exec sleep 300");
    let b = bg.spawn(&[], "exec sleep 300");
    let other = bg.start(bg.cmd_in("other").args(["run", "--", "exec sleep 300"]));
    let killed = bg.run(&["kill", "--json", "--all"]).ok().json();
    let mut ids: Vec<&str> = killed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = [a.as_str(), b.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(
        is_live(&bg.status(&other)),
        "another session's task was killed"
    );
    let widened = bg
        .run(&["kill", "--json", "--all", "--all-sessions"])
        .ok()
        .json();
    assert_eq!(widened[0]["task_id"], other.as_str());
    assert_eq!(widened[0]["status"], "killed");
    let run = bg.run(&["kill", "--all", &a]);
    assert_eq!(run.code, 2, "ids and --all together: {run:?}");
}

#[test]
fn ack_all_and_ack_by_prefix_acknowledge_this_sessions_completions() {
    let bg = Bg::new();
    let a = bg.spawn(&[], "true");
    let b = bg.spawn(&[], "true");
    let c = bg.spawn(&[], "true");
    let other = bg.run_id(bg.cmd_in("other").args(["run", "--", "true"]));
    for id in [&a, &b, &c] {
        bg.wait(id);
    }
    bg.wait(&other);
    // Prefixes of ack are this session's: another session's task is unknown.
    fails_with_code_3(&bg, &["ack", &hex(&other)[..10]], "no task with id");
    let run = bg.run(&["ack", &hex(&a)[..10]]).ok();
    assert_eq!(run.stdout, "acknowledged 1 of 1\n");
    let run = bg.run(&["ack", "--all"]).ok();
    assert_eq!(run.stdout, "acknowledged 2 of 2\n");
    let left = bg.run(&["completions", "--json"]).ok().json();
    assert_eq!(left.as_array().unwrap().len(), 0, "{left}");
    let others = bg.run_with(bg.cmd_in("other").args(["completions", "--json"]));
    assert_eq!(others.json().as_array().unwrap().len(), 1);
}
