//! The store's housekeeping under pressure: gc racing promotions, doctor
//! facing a database it cannot open, a small disk with its reserve, and a
//! stopped process holding a lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::client::Serve;
use crate::fixture::*;
use crate::rounds;

/// gc (selecting what is collectable, then deleting) runs in a loop while a
/// server promotes the same finished tasks: a promotion that answered
/// `promoted: true` recorded an unacknowledged completion, which gc must
/// never delete, with the task and its output files.
#[test]
fn gc_never_collects_a_task_promoted_beside_it() {
    let bg = Bg::new();
    let tasks = 150 * rounds(1);
    let mut ids = Vec::new();
    for _ in 0..tasks {
        let run = bg.run(&["run", "--no-notify", "--", "echo kept"]).ok();
        ids.push(run.stdout.trim().to_owned());
    }
    for id in &ids {
        bg.wait(id);
    }
    let mut serve = Serve::start(bg.cmd());
    serve.call("initialize", json!({}));
    let stop = Arc::new(AtomicBool::new(false));
    let gc_loop = {
        let stop = Arc::clone(&stop);
        let bin_cmd = move |bg: &Bg| {
            let mut cmd = bg.cmd();
            cmd.args(["gc", "--json", "--older-than", "0ms"]);
            cmd
        };
        let cmds: Vec<_> = (0..200).map(|_| bin_cmd(&bg)).collect();
        std::thread::spawn(move || {
            let mut runs = 0;
            for mut cmd in cmds {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "gc: {out:?}");
                runs += 1;
            }
            runs
        })
    };
    // Pipelined, so that promotions land while a gc run is deleting.
    let sent: Vec<u64> = ids
        .iter()
        .map(|id| serve.send("bash_promote", json!({ "task_id": id })))
        .collect();
    let mut promoted = Vec::new();
    let mut gone = 0;
    for (id, request) in ids.iter().zip(sent) {
        let reply = serve.reply(request);
        if reply["result"]["promoted"] == true {
            promoted.push(id.clone());
        } else {
            assert_eq!(reply["error"]["data"]["kind"], "task_not_found", "{reply}");
            gone += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let gc_runs = gc_loop.join().unwrap();
    serve.close();
    // Once more after the race: still nothing promoted may go.
    bg.run(&["gc", "--older-than", "0ms"]).ok();
    let pending: HashSet<String> = bg
        .run(&["completions", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap().to_owned())
        .collect();
    let mut lost = Vec::new();
    for id in &promoted {
        let kept = pending.contains(id)
            && bg.run(&["status", id]).code == 0
            && bg.home.join(format!("out/{id}.out")).exists();
        if !kept {
            lost.push(id.clone());
        }
    }
    println!(
        "fault report: gc --older-than 0ms in a loop ({gc_runs} runs) beside {tasks} promotions: {} promoted, {gone} already collected (task_not_found), {} promoted then lost",
        promoted.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "promoted, then collected: {lost:?}");
    for id in &promoted {
        assert_eq!(bg.run(&["logs", id]).ok().stdout, "kept\n", "output kept");
    }
}
