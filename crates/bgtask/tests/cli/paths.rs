//! Paths are bytes: a home whose path is not UTF-8 works for the CLI and
//! the servers (JSON shows the bytes that are not UTF-8 as U+FFFD).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use serde_json::Value;

use crate::fixture::*;

#[test]
fn a_home_that_is_not_utf8_works_everywhere() {
    let mut bg = Bg::new();
    bg.home = bg.dir.path().join(OsStr::from_bytes(b"home-\xff"));
    let task = bg
        .run(&["run", "--json", "--wait", "20s", "--", "echo hi"])
        .ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    let shown = task["stdout_path"].as_str().unwrap();
    assert!(shown.contains("home-\u{fffd}/out/"), "{shown}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    assert_eq!(bg.run(&["logs", &id]).ok().stdout, "hi\n");
    let human = bg.run(&["status", &id]).ok().stdout;
    assert!(human.contains("home-\u{fffd}/out/"), "{human}");
    assert_eq!(bg.list_all().len(), 1);
    bg.run(&["completions", "--json"]).ok().json();

    let mut serve = bg
        .cmd()
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = serve.stdin.take().unwrap();
    let requests = [
        r#"{"jsonrpc":"2.0","id":1,"method":"bash_list","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"bash","params":{"command":"echo bg","background":true}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"bash","params":{"command":"echo fg"}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"bash_drain_completions","params":{}}"#,
    ];
    for request in requests {
        writeln!(stdin, "{request}").unwrap();
    }
    drop(stdin);
    let replies: Vec<Value> = BufReader::new(serve.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .filter(|v: &Value| v.get("id").is_some())
        .collect();
    assert!(serve.wait().unwrap().success());
    assert_eq!(replies.len(), 4, "every request answered: {replies:?}");
    for reply in &replies {
        assert!(reply.get("result").is_some(), "{reply}");
    }
    assert_eq!(
        replies.iter().find(|r| r["id"] == 3).unwrap()["result"]["output"],
        "fg\n"
    );
}
