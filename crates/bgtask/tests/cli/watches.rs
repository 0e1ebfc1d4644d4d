//! Watches and notifications of every kind (issue 16): `watch`,
//! `unwatch`, `notifications`, `ack` by task or notification id.

use serde_json::Value;

use crate::fixture::*;

fn notifications(bg: &Bg) -> Vec<Value> {
    match bg.run(&["notifications", "--json"]).ok().json() {
        Value::Array(all) => all,
        other => panic!("notifications is not an array: {other}"),
    }
}

fn of_kind<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|n| n["kind"] == kind).collect()
}

#[test]
fn a_flood_of_matches_gives_one_notification_per_cooldown_with_the_count() {
    let bg = Bg::new();
    let (start, stop) = (bg.gate("start"), bg.gate("stop"));
    let id = bg.spawn(
        &[],
        &format!(
            "{}; for i in $(seq 1 10000); do echo \"hit $i\"; done; {}",
            start.hold(),
            stop.hold()
        ),
    );
    let watch = bg.run(&["watch", &id, "^hit [0-9]+$"]).ok();
    let watch_id = watch.stdout.trim().to_owned();
    assert!(watch_id.starts_with("w-"), "{watch:?}");
    start.open();
    // Every line is through the monitor once it is in the file.
    wait_until("10000 lines of output", || {
        let out = bg.run(&["logs", &id]).stdout;
        out.lines().count() == 10_000
    });
    let pending = notifications(&bg);
    let matches = of_kind(&pending, "watch_match");
    assert_eq!(matches.len(), 1, "one within the cooldown: {pending:?}");
    assert_eq!(matches[0]["watch_id"], watch_id.as_str());
    assert_eq!(matches[0]["task_id"], id.as_str());
    assert_eq!(matches[0]["detail"]["line"], "hit 1");
    assert_eq!(matches[0]["detail"]["more_matches"], 0);

    // The rest is counted and reported when the task ends.
    stop.open();
    bg.wait(&id);
    let pending = notifications(&bg);
    let matches = of_kind(&pending, "watch_match");
    assert_eq!(matches.len(), 2, "{pending:?}");
    assert_eq!(matches[1]["detail"]["more_matches"], 9_999);
    assert_eq!(matches[1]["detail"]["line"], "hit 10000");
    assert!(
        matches[1]["summary"]
            .as_str()
            .unwrap()
            .contains("+9999 more matches"),
        "{}",
        matches[1]
    );
    // Every kind in one list, oldest first; the end comes last.
    let kinds: Vec<&str> = pending
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["watch_match", "watch_match", "completed"]);
    // `completions` still shows only completions.
    let completions = bg.run(&["completions", "--json"]).ok().json();
    assert_eq!(completions.as_array().unwrap().len(), 1);
    // Acknowledging the task acknowledges all of its notifications.
    let acked = bg.run(&["ack", "--json", &id]).ok().json();
    assert_eq!(acked["acked"], 3);
    assert!(notifications(&bg).is_empty());
}

#[test]
fn once_ends_a_watch_after_its_first_match_and_single_notifications_can_be_acked() {
    let bg = Bg::new();
    let (first, second) = (bg.gate("first"), bg.gate("second"));
    let id = bg.spawn(
        &[],
        &format!(
            "{}; echo 'ERROR one'; {}; echo 'ERROR two'; sleep 30",
            first.hold(),
            second.hold()
        ),
    );
    let once = bg
        .run(&["watch", "--once", "--json", &id, "ERROR"])
        .ok()
        .json();
    let every = bg
        .run(&["watch", "--cooldown", "1ms", "--json", &id, "ERROR"])
        .ok()
        .json();
    first.open();
    wait_until("two matches", || {
        of_kind(&notifications(&bg), "watch_match").len() == 2
    });
    second.open();
    wait_until("the second line's match", || {
        of_kind(&notifications(&bg), "watch_match").len() == 3
    });
    let pending = notifications(&bg);
    let by_once: Vec<_> = pending
        .iter()
        .filter(|n| n["watch_id"] == once["watch_id"])
        .collect();
    assert_eq!(by_once.len(), 1, "--once matched once: {pending:?}");
    let list = bg.run(&["watch", "--list", "--json", &id]).ok().json();
    let once_listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["watch_id"] == once["watch_id"])
        .unwrap();
    assert!(once_listed["ended_at"].as_i64().is_some(), "{once_listed}");

    // One notification by its id.
    let note = pending[0]["notification_id"].as_str().unwrap();
    assert!(note.starts_with("n:"), "{note}");
    let acked = bg.run(&["ack", "--json", note]).ok().json();
    assert_eq!(acked["acked"], 1);
    assert_eq!(notifications(&bg).len(), 2);

    let removed = bg
        .run(&["unwatch", "--json", every["watch_id"].as_str().unwrap()])
        .ok()
        .json();
    assert!(removed["ended_at"].as_i64().is_some());
}

#[test]
fn bad_watches_are_refused_naming_the_field() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "sleep 30");
    let bad = bg.run(&["watch", &id, "(unclosed"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("pattern"), "{bad:?}");
    for n in 0..8 {
        bg.run(&["watch", &id, &format!("p{n}")]).ok();
    }
    let ninth = bg.run(&["watch", &id, "p9"]);
    assert_eq!(ninth.code, 2, "{ninth:?}");
    assert!(ninth.stderr.contains("8 watches"), "{ninth:?}");
    let listed = bg.run(&["watch", "--list", "--json", &id]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 8, "nothing more stored");

    let unknown = bg.run(&["unwatch", "w-000000000000"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("watch_id"), "{unknown:?}");

    let ended = bg.spawn(&[], "true");
    bg.wait(&ended);
    let late = bg.run(&["watch", &ended, "x"]);
    assert_eq!(late.code, 2, "{late:?}");
    assert!(late.stderr.contains("already ended"), "{late:?}");
}

#[test]
fn counted_matches_are_reported_when_the_cooldown_ends_while_the_task_runs() {
    let bg = Bg::new();
    let start = bg.gate("start");
    let id = bg.spawn(
        &[],
        &format!(
            "{}; for i in 1 2 3 4 5; do echo \"tick $i\"; done; sleep 30",
            start.hold()
        ),
    );
    bg.run(&["watch", "--cooldown", "300ms", &id, "^tick"]).ok();
    start.open();
    wait_until("the summary after the cooldown", || {
        of_kind(&notifications(&bg), "watch_match").len() == 2
    });
    let pending = notifications(&bg);
    let matches = of_kind(&pending, "watch_match");
    assert_eq!(matches[0]["detail"]["line"], "tick 1");
    assert_eq!(matches[1]["detail"]["more_matches"], 4);
    assert_eq!(matches[1]["detail"]["line"], "tick 5");
    assert_eq!(bg.status(&id)["status"], "running");
}
