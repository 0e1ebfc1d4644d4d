//! Starting tasks and reading their state: exit codes, cwd, env, list, wait.

use crate::fixture::*;

#[test]
fn exit_codes_map_to_statuses() {
    let bg = Bg::new();
    let ok = bg.spawn(&[], "true");
    let failed = bg.spawn(&[], "exit 7");
    let signaled = bg.spawn(&[], "kill -SEGV $$");
    let ok = bg.wait(&ok);
    assert_eq!(
        (ok["status"].as_str(), ok["exit_code"].as_i64()),
        (Some("completed"), Some(0))
    );
    let failed = bg.wait(&failed);
    assert_eq!(
        (failed["status"].as_str(), failed["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert!(failed["signal"].is_null());
    let signaled = bg.wait(&signaled);
    assert_eq!(signaled["status"], "failed");
    assert_eq!(signaled["exit_code"], 139);
    assert_eq!(signaled["signal"], "SIGSEGV");
}

#[test]
fn the_task_object_has_every_documented_field() {
    let bg = Bg::new();
    let run = bg
        .run(&[
            "run", "--json", "--wait", "30s", "--", "echo", "hello", "world",
        ])
        .ok();
    let task = run.json();
    for field in [
        "task_id",
        "session",
        "command",
        "cwd",
        "status",
        "exit_code",
        "signal",
        "reason",
        "pid",
        "started_at",
        "finished_at",
        "duration_ms",
        "timeout_ms",
        "stdout_path",
        "stderr_path",
    ] {
        assert!(task.get(field).is_some(), "missing {field} in {task}");
    }
    assert_eq!(
        task["command"], "echo hello world",
        "words are joined with spaces"
    );
    assert_eq!(task["status"], "completed");
    assert_eq!(task["session"], "test");
    assert_eq!(
        task["timeout_ms"],
        serde_json::Value::Null,
        "a person's task has no hard timeout by default"
    );
    assert!(task["finished_at"].as_i64() >= task["started_at"].as_i64());
    let stdout = std::fs::read_to_string(task["stdout_path"].as_str().unwrap()).unwrap();
    assert_eq!(stdout, "hello world\n");
}

#[test]
fn cwd_env_and_bash_syntax_reach_the_command() {
    let bg = Bg::new();
    let dir = bg.path("work dir");
    std::fs::create_dir(&dir).unwrap();
    let id = bg.spawn(
        &["--cwd", dir.to_str().unwrap(), "--env", "GREETING=hi there", "--env", "EMPTY="],
        r#"[[ -n "$GREETING" ]] && echo "$GREETING from $(pwd) [${EMPTY-unset}]"; read -t 1 x; echo "stdin=$?""#,
    );
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    let run = bg.run(&["logs", "--stream", "stdout", &id]).ok();
    let canonical = std::fs::canonicalize(&dir).unwrap();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("hi there from {} []", canonical.display())
    );
    assert_ne!(lines[1], "stdin=0", "stdin must be /dev/null");
    assert_eq!(task["cwd"], canonical.to_str().unwrap());
}

#[test]
fn run_wait_prints_the_final_object_or_the_id() {
    let bg = Bg::new();
    let done = bg.run(&["run", "--wait", "30s", "--json", "--", "exit 3"]);
    assert_eq!(done.code, 3, "the task's exit code: {done:?}");
    let done = done.json();
    assert_eq!(done["status"], "failed");
    assert_eq!(done["exit_code"], 3);
    let running = bg
        .run(&["run", "--wait", "100ms", "--json", "--", "sleep 60"])
        .ok()
        .json();
    assert_eq!(running["status"], "running");
    let plain = bg.run(&["run", "--wait", "100ms", "--", "sleep 60"]).ok();
    assert!(plain.stdout.trim().starts_with("bg-"), "{plain:?}");
}

#[test]
fn list_is_per_session_newest_first_and_filters_by_status() {
    let bg = Bg::new();
    let first = bg.spawn(&[], "true");
    bg.wait(&first);
    let second = bg.spawn(&[], "sleep 60");
    let other = bg.run_id(bg.cmd_in("other").args(["run", "--", "true"]));

    let mine = bg.run(&["list", "--json"]).ok().json();
    let ids: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);

    let all = bg.list_all();
    assert!(all.iter().any(|t| t["task_id"] == other.as_str()));
    assert_eq!(all.len(), 3);

    let running = bg
        .run(&["list", "--json", "--status", "running"])
        .ok()
        .json();
    assert_eq!(running.as_array().unwrap().len(), 1);
    assert_eq!(running[0]["task_id"], second.as_str());

    let table = bg.run(&["list"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATUS") && header.contains("COMMAND"));
    assert!(table.contains(&second) && table.contains("sleep 60"));

    // Ids work from any session.
    let seen = bg.run_with(
        bg.cmd()
            .env("BGTASK_SESSION", "other")
            .args(["status", "--json", &first]),
    );
    assert_eq!(seen.ok().json()["task_id"], first.as_str());
}

#[test]
fn wait_exit_codes_for_one_several_and_a_timeout() {
    let bg = Bg::new();
    let a = bg.spawn(&[], "exit 0");
    let b = bg.spawn(&[], "exit 5");
    assert_eq!(bg.run(&["wait", &b]).code, 5);
    assert_eq!(bg.run(&["wait", &a]).code, 0);
    assert_eq!(bg.run(&["wait", &a, &b]).code, 1);
    let c = bg.spawn(&[], "true");
    assert_eq!(bg.run(&["wait", &a, &c]).code, 0);

    let slow = bg.spawn(&[], "sleep 60");
    let run = bg.run(&["wait", "--timeout", "200ms", &slow]);
    assert_eq!(run.code, 124);
    assert!(
        run.stderr.contains("timed out") && run.stderr.contains(&slow),
        "{run:?}"
    );
    let tasks = bg.run(&["wait", "--json", "--timeout", "100ms", &slow, &a]);
    assert_eq!(tasks.code, 124);
    assert_eq!(tasks.json().as_array().unwrap().len(), 2);
}

#[test]
fn a_spawn_from_many_processes_at_once_loses_nothing() {
    let bg = Bg::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut cmds: Vec<std::process::Command> = Vec::new();
            for _ in 0..50 {
                let mut cmd = bg.cmd();
                cmd.env("BGTASK_MAX_RUNNING", "1000")
                    .args(["run", "--", "true"]);
                cmds.push(cmd);
            }
            std::thread::spawn(move || {
                cmds.into_iter()
                    .map(|mut c| {
                        let out = c.output().expect("run");
                        assert!(out.status.success(), "{out:?}");
                        String::from_utf8(out.stdout).unwrap().trim().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "ids are unique");
    let listed = bg.list_all();
    assert_eq!(listed.len(), 200, "every task is recorded");
    for id in &ids {
        let task = bg.wait(id);
        assert_eq!(task["status"], "completed", "{task}");
    }
}
