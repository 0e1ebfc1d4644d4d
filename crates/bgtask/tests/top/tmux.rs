//! `bgtask top` end to end in a real terminal: a tmux pane on a scratch
//! home. The test starts and kills tasks from outside and through top's
//! keys, and reads the screen with capture-pane.

use std::process::Command;

use crate::fixture::*;

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "top"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[track_caller]
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let last = self.screen();
            if cond(&last) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{last}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn top_in_tmux_follows_tasks_kills_with_confirmation_and_quits_cleanly() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    let bg = Bg::new();
    // The store exists before top starts (top shows an empty one too).
    let first = bg.spawn(&[], "echo first-task-output");
    bg.wait(&first);
    let exit_file = bg.path("top-exit");
    let shell = format!(
        "env BGTASK_HOME={} BGTASK_SESSION={} HOME={} TERM=xterm-256color {} top; echo $? > {}",
        quote(&bg.home.to_string_lossy()),
        quote(&bg.session),
        quote(&bg.dir.path().to_string_lossy()),
        quote(BIN),
        quote(&exit_file.to_string_lossy()),
    );
    let tmux = Tmux {
        socket: format!("bgtask-top-test-{}", std::process::id()),
    };
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "100",
            "-y",
            "30",
            &shell,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let short = |id: &str| id[..11].to_owned();
    tmux.wait_for("the first task", |s| {
        s.contains("bgtask top") && s.contains(&short(&first)) && s.contains("completed")
    });

    // A task started from outside appears, running, at the top.
    let gate = bg.gate("top");
    let live = bg.spawn(&[], &format!("echo live-output; {}", gate.hold()));
    tmux.wait_for("the new task running", |s| {
        s.lines()
            .any(|l| l.contains(&short(&live)) && l.contains("running"))
    });
    // Selected (g: the first row; live first, newest first), its output
    // shows under the table.
    tmux.keys(&["g"]);
    tmux.wait_for("its output", |s| {
        s.contains(&format!("{live} · running")) && s.lines().any(|l| l == "live-output")
    });

    // Kill it through top: k asks, y confirms.
    tmux.keys(&["k"]);
    tmux.wait_for("the confirmation", |s| s.contains("y to confirm"));
    tmux.keys(&["y"]);
    tmux.wait_for("the task killed", |s| {
        s.lines()
            .any(|l| l.contains(&short(&live)) && l.contains("killed"))
    });
    assert_eq!(bg.status(&live)["status"], "killed");

    // A task ending from outside shows within the wait.
    let gate2 = bg.gate("top2");
    let other = bg.spawn(&[], &gate2.hold());
    tmux.wait_for("the second task running", |s| {
        s.lines()
            .any(|l| l.contains(&short(&other)) && l.contains("running"))
    });
    gate2.open();
    tmux.wait_for("the second task completed", |s| {
        s.lines()
            .any(|l| l.contains(&short(&other)) && l.contains("completed"))
    });

    // q quits with status 0 and the pane's shell ends.
    tmux.keys(&["q"]);
    wait_until("top to exit", || exit_file.exists() && !tmux.alive());
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
}
