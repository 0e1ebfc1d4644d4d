//! Completions: recorded once per task, per session, peeked until acked.

use crate::fixture::*;

#[test]
fn completions_are_peeked_oldest_first_until_acknowledged() {
    let bg = Bg::new();
    let first = bg.spawn(&[], "echo one");
    bg.wait(&first);
    let second = bg.spawn(&[], "echo two; exit 2");
    bg.wait(&second);
    let quiet = bg.spawn(&["--no-notify"], "true");
    bg.wait(&quiet);

    let peek = || bg.run(&["completions", "--json"]).ok().json();
    let listed = peek();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [first.as_str(), second.as_str()],
        "oldest first, no --no-notify task"
    );
    assert_eq!(listed[1]["exit_code"], 2);
    assert_eq!(listed[1]["status"], "failed");
    assert_eq!(listed[1]["output_preview"], "two\n");
    assert_eq!(listed[1]["session"], "test");
    for field in [
        "command",
        "duration_ms",
        "signal",
        "output_truncated",
        "stdout_path",
        "stderr_path",
    ] {
        assert!(listed[0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(peek(), listed, "peeking does not consume");

    let acked = bg.run(&["ack", "--json", &first]).ok().json();
    assert_eq!(acked["acked"], 1);
    let left = peek();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["task_id"], second.as_str());

    let again = bg.run(&["ack", "--json", &first]).ok().json();
    assert_eq!(again["acked"], 0, "acking twice is harmless");

    let unknown = bg.run(&["ack", "bg-00000000000000ff"]);
    assert_eq!(unknown.code, 3);
    assert!(
        unknown.stderr.contains("bg-00000000000000ff"),
        "{unknown:?}"
    );
    let no_completion = bg.run(&["ack", &quiet]);
    assert_eq!(
        no_completion.code, 3,
        "a --no-notify task has no completion to ack"
    );
    assert_eq!(
        peek().as_array().unwrap().len(),
        1,
        "a failed ack changes nothing"
    );
}

#[test]
fn completions_stay_in_their_session() {
    let bg = Bg::new();
    let mine = bg.spawn(&[], "true");
    bg.wait(&mine);
    let other = |args: &[&str]| bg.run_with(bg.cmd().env("BGTASK_SESSION", "other").args(args));
    let theirs = other(&["completions", "--json"]).ok().json();
    assert_eq!(theirs.as_array().unwrap().len(), 0);
    let ack = other(&["ack", &mine]);
    assert_eq!(ack.code, 3, "another session cannot ack my completion");
    assert_eq!(
        bg.run(&["completions", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn gc_removes_only_finished_acknowledged_tasks_with_their_files() {
    let bg = Bg::new();
    let acked = bg.spawn(&[], "echo a");
    let unacked = bg.spawn(&[], "echo b");
    let quiet = bg.spawn(&["--no-notify"], "echo c");
    let live = bg.spawn(&["--no-notify"], "sleep 300");
    for id in [&acked, &unacked, &quiet] {
        bg.wait(id);
    }
    bg.run(&["ack", &acked]).ok();
    let acked_out = bg.status(&acked)["stdout_path"]
        .as_str()
        .unwrap()
        .to_owned();

    let kept = bg.run(&["gc", "--json"]).ok().json();
    assert_eq!(
        kept["removed"].as_array().unwrap().len(),
        0,
        "the default age keeps fresh tasks"
    );

    let report = bg.run(&["gc", "--json", "--older-than", "0ms"]).ok().json();
    let mut removed: Vec<&str> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    let mut expected = vec![acked.as_str(), quiet.as_str()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(
        !std::path::Path::new(&acked_out).exists(),
        "output files go with the task"
    );
    assert_eq!(bg.run(&["status", &acked]).code, 3);
    assert_eq!(bg.status(&unacked)["status"], "completed");
    assert_eq!(bg.status(&live)["status"], "running");
}
