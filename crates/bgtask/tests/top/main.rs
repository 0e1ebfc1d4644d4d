//! `bgtask top`: its model and view on ratatui's test backend (rendered
//! frames for known tasks, keys), and one end-to-end run under tmux.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[path = "../cli/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod fixture;

// The binary's own modules, compiled into this test (the binary has no
// library target): `top`'s model and view, and the render helpers they use.
#[path = "../../src/render.rs"]
#[allow(dead_code, reason = "top uses part of render")]
mod render;

#[allow(dead_code, reason = "the loop in mod.rs is not compiled here")]
mod top;

mod frames;
mod tmux;
