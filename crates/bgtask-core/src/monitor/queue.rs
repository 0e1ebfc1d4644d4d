//! A queued task's monitor waiting for its turn (issue 21).
//!
//! The monitor holds the task's environment (it came with the starter's
//! `queue` message and is never stored) and sleeps on its control socket,
//! with a timer only for a delayed task, so 1000 queued tasks cost no CPU.
//! It keeps no store connection while it sleeps (every open connection
//! makes each other process's locking slower). It wakes when told:
//! `Control::Claimed` by whoever claimed its turn (the claim is committed:
//! it starts without reading the store), or `Control::Start` by one that
//! ended it or repairs a stale claim (it reads the store: `starting` means
//! go, an end means exit). When its delay
//! passes it runs the scheduling pass itself, which may claim it.

use std::path::Path;
use std::time::Duration;

use super::{log, open_store};
use crate::clock::now_ms;
use crate::control::{Channel, Control, Reply};
use crate::process;
use crate::store::Store;
use crate::task::{Status, TaskId};

/// Waits until the task's turn comes. Returns the listening channel and
/// the store connection that read the turn (the task is now `starting` or
/// `killing`: start it; the connection is kept, as a second open would be
/// most of a hand-off's cost), or no connection when the claimer said so
/// (`Control::Claimed`: nothing was read), or `None` if it ended while
/// queued (killed, a failed dependency) or cannot be waited for.
pub(super) fn wait_turn(home: &Path, id: &TaskId) -> Option<(Channel, Option<Store>)> {
    // Bound before the store is read: a claim made before this read is
    // seen in the store, one made after it is told on the socket.
    let channel = match Channel::open(home, id) {
        Ok(channel) => channel,
        Err(e) => {
            // Nobody could tell it its turn: it must not stay queued.
            log(&format!("{id}: cannot listen for its turn: {e}"));
            if let Some(mut store) = open_store(home, id) {
                super::start::record_start_failure(
                    &mut store,
                    id,
                    &format!("spawn aborted: the queued task cannot be told its turn: {e}"),
                );
                let _ = crate::control::schedule(&mut store);
            }
            return None;
        }
    };
    let mut released = false;
    // Whether this monitor ran the pass for its own due delay already.
    let mut due_done = false;
    loop {
        let mut store = open_store(home, id)?;
        let (status, start_at) = match store.queue_state(id) {
            Ok(Some(state)) => state,
            Ok(None) => return None,
            Err(e) => {
                log(&format!("{id}: cannot read its queue state: {e}"));
                return None;
            }
        };
        match status {
            Status::Queued => {}
            s if s.is_live() => return Some((channel, Some(store))),
            _ => return None,
        }
        let now = now_ms();
        let wait = match start_at {
            Some(at) if at > now => Some(Duration::from_millis((at - now) as u64)),
            Some(_) if !due_done => {
                // The delay passed: this monitor is the one to notice.
                due_done = true;
                if let Err(e) = crate::control::schedule(&mut store) {
                    log(&format!("{id}: cannot run the queue: {e}"));
                }
                continue;
            }
            _ => None,
        };
        drop(store);
        if !released {
            // What the start-up touched is not needed while waiting.
            process::release_startup_pages();
            released = true;
        }
        // Woken by a request (or the timer): read the store again.
        if process::wait_readable(&[channel.as_fd()], wait).is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut claimed = false;
        while let Some(incoming) = channel.next() {
            let reply = match incoming.request {
                Control::Start | Control::Kill { .. } | Control::Watch => Reply::Done,
                Control::Claimed => {
                    claimed = true;
                    Reply::Done
                }
                _ => Reply::Failed {
                    message: format!("task {id} is queued and has not started"),
                },
            };
            incoming.answer(&reply);
            if claimed {
                break;
            }
        }
        if claimed {
            // The claimer committed `starting` before it told: start now,
            // and open the store only to record the start, while the
            // shell starts (a kill recorded meanwhile is seen there, as
            // after a `go`). Requests still waiting are the
            // supervisor's.
            return Some((channel, None));
        }
    }
}
