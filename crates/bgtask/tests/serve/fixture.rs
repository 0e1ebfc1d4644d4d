//! The serve tests' fixture: the shared one (`../shared/fixture.rs`) and
//! tasks started in a given session.

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
}
