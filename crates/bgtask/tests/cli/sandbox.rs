//! Sandboxed tasks (docs/sandbox.md): real programs under each mode.
//! The fixture's HOME is its temp dir, so `~/.ssh` here is a scratch one;
//! tasks run in `work/` beneath it (the temp dir itself holds denied paths:
//! a directory on the way to a denied path cannot get new entries).

use std::path::Path;

use serde_json::Value;

use crate::fixture::*;

/// Whether this kernel can run sandboxed tasks; says why not otherwise.
fn can_sandbox(bg: &Bg) -> bool {
    let work = workdir(bg);
    let run = bg.run(&[
        "run",
        "--sandbox",
        "workspace",
        "--no-network",
        "--wait",
        "30s",
        "--cwd",
        work.to_str().unwrap(),
        "--",
        "true",
    ]);
    if run.code != 0 && run.stderr.contains("cannot sandbox") {
        eprintln!("skipped: this machine cannot sandbox tasks: {}", run.stderr);
        return false;
    }
    assert_eq!(run.code, 0, "{run:?}");
    true
}

fn workdir(bg: &Bg) -> std::path::PathBuf {
    let work = bg.path("work");
    std::fs::create_dir_all(&work).unwrap();
    work
}

/// Runs `script` in `work/` with `flags`, waits for it and returns the
/// task, its stdout and its stderr.
fn run_in_work(bg: &Bg, flags: &[&str], script: &str) -> (Value, String, String) {
    let work = workdir(bg);
    let mut args = vec![
        "run",
        "--json",
        "--wait",
        "60s",
        "--cwd",
        work.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    args.extend(["--", script]);
    let run = bg.run(&args);
    let task = run.json();
    assert!(!is_live(&task), "the task did not end: {task}");
    let out = std::fs::read_to_string(task["stdout_path"].as_str().unwrap()).unwrap();
    let err = std::fs::read_to_string(task["stderr_path"].as_str().unwrap()).unwrap();
    (task, out, err)
}

#[test]
fn workspace_writes_its_tree_and_its_tmpdir_and_nothing_outside() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    let outside = bg.path("outside");
    let script = format!(
        "echo in > inside && mkdir -p sub && echo deep > sub/file && cat inside sub/file; \
         python3 -c 'open(\"{o}\", \"w\")' 2>/dev/null; echo python=$?; \
         (echo x > '{o}') 2>&1; \
         echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\" && echo \"$TMPDIR\"; \
         echo x > /dev/null && echo devnull",
        o = outside.display()
    );
    let (task, out, _) = run_in_work(&bg, &["--sandbox", "workspace"], &script);
    assert_eq!(task["status"], "completed", "{task}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["in", "deep"], "{out}");
    assert!(
        out.contains("Permission denied"),
        "the write outside is EACCES: {out}"
    );
    if !out.contains("python=127") {
        assert!(out.contains("python=1"), "{out}");
    }
    assert!(!outside.exists(), "nothing was written outside");
    assert!(out.contains("tmp\n") && out.contains("devnull"), "{out}");
    // The private TMPDIR is the task's own, and gone once it ended.
    let tmpdir = lines
        .iter()
        .find(|l| l.contains("/tmp/bg-"))
        .unwrap_or_else(|| panic!("no TMPDIR in {out}"));
    assert!(tmpdir.starts_with(bg.home.to_str().unwrap()), "{tmpdir}");
    assert!(!Path::new(tmpdir).exists(), "{tmpdir} was removed");
    let sandbox = &task["sandbox"];
    assert_eq!(sandbox["mode"], "workspace", "{task}");
    assert_eq!(sandbox["no_network"], false, "{task}");
    assert!(
        sandbox["enforced_by"]
            .as_str()
            .unwrap()
            .contains("landlock"),
        "{task}"
    );
    let work = workdir(&bg).canonicalize().unwrap();
    assert_eq!(sandbox["allow_write"][0], work.to_str().unwrap(), "{task}");
}

#[test]
fn credentials_and_the_store_are_unreadable_unless_allowed() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    std::fs::create_dir_all(bg.path(".ssh")).unwrap();
    std::fs::write(bg.path(".ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
    std::fs::create_dir_all(bg.path(".aws")).unwrap();
    std::fs::write(bg.path(".aws/credentials"), "AWS SECRET\n").unwrap();
    std::fs::write(bg.path("readable"), "public\n").unwrap();
    let script = "cat ~/.ssh/id_ed25519; cat ~/.aws/credentials; cat \"$BGTASK_HOME/bgtask.db\" >/dev/null; cat ../readable; ls ~/.ssh";
    for mode in ["workspace", "read-only"] {
        let (task, out, err) = run_in_work(&bg, &["--sandbox", mode], script);
        assert!(
            !out.contains("PRIVATE") && !out.contains("AWS SECRET"),
            "{out}"
        );
        assert_eq!(
            err.matches("Permission denied").count(),
            3,
            "{mode}: {err} {task}"
        );
        // What is not denied stays readable; denied names stay listable.
        assert!(
            out.contains("public") && out.contains("id_ed25519"),
            "{out}"
        );
    }
    let (_, out, err) = run_in_work(
        &bg,
        &[
            "--sandbox",
            "workspace",
            "--allow-read",
            bg.path(".ssh").to_str().unwrap(),
        ],
        "cat ~/.ssh/id_ed25519",
    );
    assert_eq!(out, "PRIVATE KEY\n", "--allow-read re-allows it: {err}");
}

#[test]
fn read_only_writes_only_its_tmpdir() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    let (task, out, err) = run_in_work(
        &bg,
        &["--sandbox", "read-only"],
        "echo x > inside; echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"; cat /etc/hostname >/dev/null && echo read",
    );
    assert!(err.contains("inside: Permission denied"), "{err}");
    assert!(!workdir(&bg).join("inside").exists());
    assert_eq!(out, "tmp\nread\n", "{task}");
    assert_eq!(task["sandbox"]["mode"], "read-only");
    assert_eq!(task["sandbox"]["allow_write"], serde_json::json!([]));
    // --allow-write adds a tree.
    let extra = bg.path("extra");
    std::fs::create_dir_all(&extra).unwrap();
    let (_, _, err) = run_in_work(
        &bg,
        &[
            "--sandbox",
            "read-only",
            "--allow-write",
            extra.to_str().unwrap(),
        ],
        &format!("echo x > '{}/f'", extra.display()),
    );
    assert!(extra.join("f").exists(), "{err}");
}

#[test]
fn children_setsid_grandchildren_and_escapes_stay_confined() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    let names = ["child", "setsid", "nohup", "env", "unshare", "python"];
    let target = |name: &str| bg.path(&format!("escape-{name}"));
    let script = format!(
        "sh -c 'echo x > {child}'; \
         setsid sh -c 'echo x > {setsid}' & wait; \
         nohup sh -c 'echo x > {nohup}' >/dev/null 2>&1; \
         env -i /bin/sh -c 'echo x > {env}'; \
         unshare -r sh -c 'echo x > {unshare}' 2>/dev/null; \
         python3 -c 'import os; os.setsid(); open(\"{python}\", \"w\")' 2>/dev/null; \
         echo done",
        child = target("child").display(),
        setsid = target("setsid").display(),
        nohup = target("nohup").display(),
        env = target("env").display(),
        unshare = target("unshare").display(),
        python = target("python").display(),
    );
    let (task, out, err) = run_in_work(&bg, &["--sandbox", "workspace"], &script);
    assert_eq!(out, "done\n", "{task} {err}");
    for name in names {
        assert!(!target(name).exists(), "{name} escaped: {err}");
    }
}

#[test]
fn no_network_closes_outside_servers_but_not_the_task_s_own_loopback() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3 for the loopback server");
        return;
    }
    // A server outside the task, on loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 3); print(\"reached\")'"
    );
    // Without --no-network it is reachable (so the refusal below is the
    // sandbox's doing).
    let (_, out, err) = run_in_work(&bg, &[], &probe);
    assert_eq!(out, "reached\n", "{err}");
    let own = "python3 - <<'EOF'\n\
import socket\n\
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n\
port = server.getsockname()[1]\n\
socket.create_connection(('127.0.0.1', port), 3)\n\
print('own reached')\n\
EOF";
    let script = format!("{probe} 2>/dev/null || echo outside refused; {own}");
    let (task, out, err) = run_in_work(&bg, &["--no-network"], &script);
    assert_eq!(out, "outside refused\nown reached\n", "{task} {err}");
    assert_eq!(task["sandbox"]["no_network"], true, "{task}");
    assert_eq!(task["sandbox"]["mode"], "none", "{task}");
    drop(listener);
}

#[test]
fn an_unreachable_landlock_abi_refuses_the_task_and_says_why() {
    let bg = Bg::new();
    bg.write_config("[sandbox]\nrequire_abi = 1000\n");
    let work = workdir(&bg);
    let cwd = work.to_str().unwrap();
    let run = bg.run(&["run", "--sandbox", "workspace", "--cwd", cwd, "--", "true"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot sandbox")
            && run.stderr.contains("ABI 1000")
            && run.stderr.contains("--sandbox-fallback none"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(bg.list_all().is_empty(), "nothing was recorded");
    // The fallback runs it unconfined, and says so on the task.
    let run = bg.run(&[
        "run",
        "--json",
        "--wait",
        "30s",
        "--sandbox",
        "workspace",
        "--sandbox-fallback",
        "none",
        "--cwd",
        cwd,
        "--",
        "echo x > ../written",
    ]);
    let task = run.json();
    assert_eq!(task["status"], "completed", "{task}");
    assert!(bg.path("written").exists());
    let enforced = task["sandbox"]["enforced_by"].as_str().unwrap();
    assert!(enforced.starts_with("none (fallback:"), "{task}");
    let status = bg.run(&["status", task["task_id"].as_str().unwrap()]).ok();
    assert!(status.stdout.contains("sandbox:  workspace"), "{status:?}");
    // And `bgtask config` shows where the requirement came from.
    let config = bg.run(&["config"]).ok().stdout;
    let line = config
        .lines()
        .find(|l| l.starts_with("sandbox.require_abi"))
        .unwrap();
    assert!(
        line.contains("1000") && line.contains("config file"),
        "{line}"
    );
}

#[test]
fn a_failed_sandboxed_task_says_the_sandbox_may_be_why() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    let (task, _, _) = run_in_work(&bg, &["--sandbox", "workspace"], "echo x > ../nope");
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("sandboxed (workspace)") && reason.contains("may be why"),
        "{task}"
    );
    let (task, _, _) = run_in_work(&bg, &[], "exit 3");
    assert_eq!(task["reason"], Value::Null, "unsandboxed: no note: {task}");
}

#[test]
fn bad_sandbox_flags_are_one_line_usage_errors() {
    let bg = Bg::new();
    for (args, needle) in [
        (vec!["run", "--sandbox", "open", "--", "true"], "open"),
        (
            vec!["run", "--sandbox-fallback", "always", "--", "true"],
            "always",
        ),
        (
            vec![
                "run",
                "--sandbox",
                "workspace",
                "--allow-write",
                "/nonexistent/dir",
                "--",
                "true",
            ],
            "/nonexistent/dir",
        ),
    ] {
        let run = bg.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
}

#[test]
fn without_namespaces_no_network_is_a_seccomp_filter_that_keeps_unix_sockets() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3");
        return;
    }
    // The config's test hook stands for a machine without namespaces.
    bg.write_config("[sandbox]\nnetwork = \"seccomp\"\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = r#"python3 - <<'EOF'
import socket
a, b = socket.socketpair(); a.send(b'unix'); print(b.recv(4).decode())
for family in (socket.AF_INET, socket.AF_INET6):
    try:
        socket.socket(family)
        print('opened')
    except PermissionError:
        print('denied')
try:
    socket.create_connection(('127.0.0.1', PORT), 3)
    print('reached')
except PermissionError:
    print('denied')
EOF"#
        .replace("PORT", &port.to_string());
    let (task, out, err) = run_in_work(&bg, &["--no-network"], &script);
    assert_eq!(out, "unix\ndenied\ndenied\ndenied\n", "{task} {err}");
    let enforced = task["sandbox"]["enforced_by"].as_str().unwrap();
    assert!(enforced.contains("seccomp"), "{task}");
    drop(listener);
}

#[test]
fn a_sandboxed_task_cannot_signal_processes_outside_it() {
    let bg = Bg::new();
    if !can_sandbox(&bg) {
        return;
    }
    let mut outside = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let script = format!(
        "kill -0 {} 2>/dev/null; echo outside=$?; sleep 0 & kill -0 $! 2>/dev/null; echo own=$?",
        outside.id()
    );
    let (task, out, _) = run_in_work(&bg, &["--sandbox", "workspace"], &script);
    let _ = outside.kill();
    let _ = outside.wait();
    let enforced = task["sandbox"]["enforced_by"].as_str().unwrap().to_owned();
    let abi: u32 = enforced
        .split("ABI ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if abi < 6 {
        eprintln!("skipped: Landlock ABI {abi} has no signal scope");
        return;
    }
    assert_eq!(out, "outside=1\nown=0\n", "{task}");
}
