//! Many processes at once, and clocks that jump.

use std::collections::HashSet;
use std::process::Command;

use serde_json::{json, Value};

use crate::crashes::verify_store;
use crate::fixture::*;
use crate::{rounds, Rng};

#[test]
fn eight_processes_spawning_killing_waiting_and_acking_at_once_lose_nothing() {
    let bg = Bg::new();
    let ops_each = 100 * rounds(1);
    let workers: Vec<_> = (0..8u64)
        .map(|worker| {
            let base: Vec<Command> = (0..ops_each).map(|_| bg.cmd()).collect();
            std::thread::spawn(move || {
                let mut rng = Rng(worker * 7919 + 17);
                let mut mine: Vec<String> = Vec::new();
                let mut counts = [0usize; 4];
                for mut cmd in base {
                    cmd.env("BGTASK_MAX_RUNNING", "1000");
                    let op = if mine.is_empty() { 0 } else { rng.below(4) };
                    counts[op as usize] += 1;
                    let pick = |rng: &mut Rng, mine: &Vec<String>| {
                        mine[rng.below(mine.len() as u64) as usize].clone()
                    };
                    let out = match op {
                        // Short and longer tasks, so kills land on both
                        // running and finished tasks.
                        0 if rng.below(2) == 0 => {
                            cmd.args(["run", "--", "sleep 0.02; exit 7"]).output()
                        }
                        0 => cmd.args(["run", "--", "sleep 0.4; exit 7"]).output(),
                        1 => cmd
                            .args(["kill", "--grace", "50ms", &pick(&mut rng, &mine)])
                            .output(),
                        2 => cmd
                            .args(["wait", "--timeout", "5s", &pick(&mut rng, &mine)])
                            .output(),
                        _ => cmd.args(["ack", &pick(&mut rng, &mine)]).output(),
                    }
                    .expect("run bgtask");
                    let code = out.status.code();
                    match op {
                        0 => {
                            assert_eq!(code, Some(0), "{out:?}");
                            mine.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
                        }
                        1 => assert_eq!(code, Some(0), "kill: {out:?}"),
                        2 => assert!(matches!(code, Some(7 | 137 | 143)), "wait: {out:?}"),
                        // An ack of a task that has not finished yet names it.
                        _ => assert!(matches!(code, Some(0 | 3)), "ack: {out:?}"),
                    }
                }
                (mine, counts)
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut totals = [0usize; 4];
    for w in workers {
        let (mine, counts) = w.join().unwrap();
        ids.extend(mine);
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "task ids are unique");
    let listed = bg.list_all();
    assert_eq!(listed.len(), ids.len(), "no task lost or duplicated");
    let outcomes = verify_store(&bg);
    println!(
        "fault report: 8 processes x {ops_each} ops ({} spawns, {} kills, {} waits, {} acks): {} tasks, ids unique, outcomes {:?}, integrity ok",
        totals[0], totals[1], totals[2], totals[3], ids.len(), outcomes
    );
}

#[test]
fn recorded_times_far_in_the_past_or_future_break_nothing() {
    let bg = Bg::new();
    let past = bg.spawn(&["--timeout", "2s"], "sleep 300");
    let future = bg.spawn(&[], "sleep 300");
    let done = bg.spawn(&[], "exit 7");
    bg.wait(&done);
    {
        let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
        conn.execute(
            "UPDATE tasks SET started_at = 0, created_at = 0 WHERE task_id = ?1",
            [&past],
        )
        .unwrap();
        conn.execute(
            "UPDATE tasks SET started_at = 32503680000000 WHERE task_id = ?1",
            [&future],
        )
        .unwrap();
        conn.execute(
            "UPDATE tasks SET finished_at = 1 WHERE task_id = ?1",
            [&done],
        )
        .unwrap();
        conn.execute(
            "UPDATE meta SET value = '99999999999999' WHERE key = 'last_gc_at'",
            [],
        )
        .unwrap();
    }
    for args in [
        &["list"][..],
        &["list", "--json"][..],
        &["status", &future][..],
        &["completions"][..],
    ] {
        let run = bg.run(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    // The timeout runs on the monitor's monotonic clock, not the record.
    assert_eq!(
        bg.status(&past)["status"],
        "running",
        "a past start time does not fire the timeout early"
    );
    let timed = bg.wait(&past);
    assert_eq!(timed["status"], "timed_out");
    // Reminders: elapsed time is never negative, nothing panics.
    let mut serve = bg.serve_with(bg.cmd());
    serve.call_frame("initialize", json!({"long_running_interval_ms": 200}));
    let reminder = serve
        .next_matching(|m| {
            m["method"] == "bash_long_running" && m["params"]["task_id"] == future.as_str()
        })
        .expect("a reminder for the running task");
    assert!(
        reminder["params"]["elapsed_ms"].as_i64().unwrap() >= 0,
        "{reminder}"
    );
    let listed: Value = serve.call_frame("bash_list", json!({}))["result"].clone();
    assert!(listed["tasks"].as_array().unwrap().len() >= 3);
    serve.close();
    bg.run(&["kill", "--grace", "0ms", &future]).ok();
    // gc with a last run "in the future" still runs (clock went backwards).
    bg.run(&["ack", &done]).ok();
    let gc = bg.run(&["gc", "--json", "--older-than", "1h"]).ok().json();
    assert!(gc["removed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == done.as_str()));
    println!("fault report: clock jumps (start times at 1970 and 3000, a finish in 1970, last gc in the future): no panic, timeout on the monotonic clock, reminders non-negative, gc ran");
}

#[test]
fn many_processes_creating_a_new_store_at_once_all_succeed() {
    let rounds = rounds(10);
    for _ in 0..rounds {
        let bg = Bg::new();
        let children: Vec<_> = (0..8)
            .map(|i| {
                let mut cmd = bg.cmd();
                if i % 2 == 0 {
                    cmd.args(["list", "--json"]);
                } else {
                    cmd.args(["run", "--", "true"]);
                }
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(bg.list_all().len(), 4);
    }
    println!("fault report: {rounds} rounds of 8 processes opening a new store at once: all succeeded, no 'database is locked'");
}
