//! The serve tests' fixture: the shared one (`../shared/fixture.rs`),
//! tasks started in a given session, and gates that hold a task until the
//! test lets it go.

use std::path::PathBuf;

#[path = "../shared/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod shared;
pub use shared::*;

impl Bg {
    /// Starts a task with `bgtask run` in `session` and returns its id.
    pub fn spawn_in(&self, session: &str, command: &str) -> String {
        self.start(self.cmd_in(session).args(["run", "--", command]))
    }

    /// Starts a task with `bgtask run` in the fixture's session.
    pub fn spawn(&self, command: &str) -> String {
        self.spawn_in(&self.session.clone(), command)
    }

    /// A gate named `name`: tasks that run [`Gate::hold`] wait until the
    /// test calls [`Gate::open`].
    pub fn gate(&self, name: &str) -> Gate {
        Gate {
            path: self.path(&format!("gate-{name}")),
        }
    }
}

/// A file a task waits for, so the test decides when it ends.
pub struct Gate {
    path: PathBuf,
}

impl Gate {
    /// Shell code that returns once the gate is open.
    pub fn hold(&self) -> String {
        format!(
            "until [ -e '{}' ]; do sleep 0.02; done",
            self.path.display()
        )
    }

    pub fn open(&self) {
        std::fs::write(&self.path, b"").expect("open the gate");
    }
}
