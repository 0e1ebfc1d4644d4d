//! The monitor's control channel: how any bgtask process of the same user
//! tells a running task's monitor to do something.
//!
//! Each monitor listens on `HOME/ctl/<task_id>.sock` (see
//! [`crate::store::control_socket_path`]; directory 0700, socket 0600, the
//! peer's uid checked on accept, see `process/linux/control.rs`). A request
//! is one JSON line of [`Control`], answered by one JSON line of [`Reply`].
//! The socket exists while the monitor supervises its task; a stale one (a
//! killed monitor's) refuses connections, and every sender has a fallback
//! (for a kill: `SIGUSR1` to the verified monitor, which then reads the
//! store).
//!
//! One vocabulary for everything a monitor can be told (style.md §13): a
//! new request is a variant of [`Control`], answered in
//! `monitor/supervise.rs` (`answer`). Requests whose feature has not landed
//! are answered [`Reply::NotSupported`].
//!
//! Whoever asks for a state change records it in the store first (a kill
//! is `killing` before the monitor hears of it), so a requester that dies
//! between the two leaves the request recorded, and reconcile tells the
//! monitor again.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::process::{self, ControlListener};
use crate::store::{control_socket_path, FinishRecord, Scheduled, Store};
use crate::task::TaskId;

/// Something a monitor is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Stop the task: SIGTERM to its whole tree now, SIGKILL after
    /// `grace_ms` (at once when 0).
    Kill { grace_ms: u64 },
    /// A signal to the task's tree, or to its shell only (issue 18).
    Signal { signal: String, leader: bool },
    /// Bytes for the task's stdin or terminal; `eof` closes it (issue 18).
    Input { data: String, eof: bool },
    /// A new size for the task's terminal (issue 18).
    Resize { rows: u16, cols: u16 },
    /// Re-read the task's stored watches (issue 16).
    Watch,
    /// The current screen of a `--pty` task (issue 18).
    Screen,
    /// Hold the task's whole tree stopped, as the store's `paused` asks
    /// (issue 21). Like `Resume`, a nudge: the monitor carries out what
    /// the store says now, so a late or repeated one changes nothing.
    Pause,
    /// Let a paused task run again, as the store's `running` asks.
    Resume,
    /// A queued task's turn came, or it ended while queued: read the store
    /// (issue 21). A monitor that supervises already ignores it.
    Start,
    /// The queued task was claimed (`starting` is committed): start it
    /// without reading the store first, as a `go` on the pipe does (issue
    /// 21; the store read and its open were most of a hand-off). Sent only
    /// by the claimer, after its commit; a monitor that does not know it
    /// answers `failed`, and is then told [`Control::Start`].
    Claimed,
}

impl Control {
    /// The request's name, as a reply names it.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Kill { .. } => "kill",
            Control::Signal { .. } => "signal",
            Control::Input { .. } => "input",
            Control::Resize { .. } => "resize",
            Control::Watch => "watch",
            Control::Screen => "screen",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Start => "start",
            Control::Claimed => "claimed",
        }
    }
}

/// A monitor's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reply")]
pub enum Reply {
    /// Carried out (for a kill: the stop has begun, or had already).
    Done,
    /// This monitor does not carry out such requests (yet).
    NotSupported { request: String },
    /// The request could not be read or carried out.
    Failed { message: String },
    /// Input was taken: how much at once and how much waits (issue 18).
    Sent { sent: crate::interact::Sent },
    /// A `--pty` task's screen (issue 18).
    Screen { screen: crate::interact::Screen },
}

/// How long a sender waits for the monitor's answer. A monitor answers
/// from its wait loop before touching the store, so only a stopped or
/// wedged monitor takes longer; the sender then falls back.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the monitor waits for a connected sender's request to begin,
/// so a sender that connects and says nothing cannot hold up supervision.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a whole request may take to arrive once it began: a 1 MiB
/// input comes in many reads, and a sender on a loaded machine may not
/// run for more than [`REQUEST_TIMEOUT`] between two of them.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Longest request line (room for issue 18's 1 MiB of input, escaped).
const MAX_REQUEST_BYTES: u64 = 8 << 20;

/// Tells the monitor of task `id` in the store at `home` to do `request`
/// and returns its answer. An error when no monitor listens (none runs, it
/// ended, its socket is stale) or it did not answer in time: the caller
/// falls back (see the module doc).
pub fn send(home: &Path, id: &TaskId, request: &Control) -> io::Result<Reply> {
    send_to(&control_socket_path(home, id), request)
}

/// Whether a monitor listens on the control socket of task `id`.
pub fn is_reachable(home: &Path, id: &TaskId) -> bool {
    process::connect_control(&control_socket_path(home, id)).is_ok()
}

fn send_to(path: &Path, request: &Control) -> io::Result<Reply> {
    let mut stream = process::connect_control(path)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The scheduling pass of issue 21 and its hand-off: claims, in one
/// transaction, every queued task whose turn it is (`Store::schedule`),
/// then tells each claimed task's monitor to start (and each task failed
/// by a failed dependency's monitor to exit). Run by whoever records an
/// end, raises a limit or resumes a group, in that process: a monitor
/// that is not told stays queued at no cost, and 1000 queued tasks are
/// never all woken. A claim whose teller died before telling is told again
/// by the next pass that finds it stale (`Store::stale_claims`); a claimed
/// monitor that is gone leaves a `starting` task with a dead owner, which
/// reconcile gives a new monitor if it never began the start, else
/// records failed (`executor/local.rs`, `adopt_queued`).
pub fn schedule(store: &mut Store) -> crate::error::Result<Scheduled> {
    let scheduled = store.schedule()?;
    if !scheduled.started.is_empty() {
        // The fault tests kill the teller between claim and hand-off.
        process::fault::point("handoff_after_claim");
    }
    if scheduled.to_tell().next().is_some() {
        store.touch_events();
    }
    tell_turns(store.home(), &scheduled);
    Ok(scheduled)
}

/// [`schedule`], and tells again the claims that look stale (for
/// reconcile: a crash between a claim and its hand-off is repaired by the
/// next command).
pub fn schedule_and_repair(store: &mut Store) -> crate::error::Result<Scheduled> {
    let scheduled = schedule(store)?;
    for id in store.stale_claims(crate::clock::now_ms())? {
        let _ = send(store.home(), &id, &Control::Start);
    }
    Ok(scheduled)
}

/// Records the end of a live task and hands its slot on: the end and the
/// scheduling pass are one transaction (`Store::finish_and_schedule`),
/// and the claimed monitors are told before anything else is done (the
/// events touch follows), so the next task's start waits for nothing it
/// does not need. False if the task was already terminal.
pub fn finish_and_hand_on(
    store: &mut Store,
    id: &TaskId,
    record: &FinishRecord,
) -> crate::error::Result<bool> {
    let Some(scheduled) = store.finish_and_schedule(id, record)? else {
        return Ok(false);
    };
    if !scheduled.started.is_empty() {
        process::fault::point("handoff_after_claim");
    }
    tell_turns(store.home(), &scheduled);
    store.touch_events();
    Ok(true)
}

/// Tells the monitors of the tasks a pass decided on: a claimed one may
/// start at once ([`Control::Claimed`]), one a failed dependency ended
/// reads the store ([`Control::Start`]).
pub fn tell_turns(home: &Path, scheduled: &Scheduled) {
    for id in &scheduled.started {
        // A monitor that does not answer is gone (reconcile records its
        // task) or not listening yet (it reads the store after it binds).
        // One that does not know `claimed` (an older binary) reads it.
        if let Ok(Reply::Failed { .. } | Reply::NotSupported { .. }) =
            send(home, id, &Control::Claimed)
        {
            let _ = send(home, id, &Control::Start);
        }
    }
    for id in &scheduled.failed {
        let _ = send(home, id, &Control::Start);
    }
}

/// The monitor's end of the channel.
#[derive(Debug)]
pub struct Channel {
    listener: ControlListener,
}

/// A request that arrived, with the connection its answer goes back on.
#[derive(Debug)]
pub struct Incoming {
    pub request: Control,
    stream: UnixStream,
}

impl Channel {
    /// Listens for task `id` of the store at `home`. Removed on drop.
    pub fn open(home: &Path, id: &TaskId) -> io::Result<Channel> {
        Ok(Channel {
            listener: ControlListener::bind(&control_socket_path(home, id))?,
        })
    }

    /// Readable when a sender is waiting.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The next well-formed request waiting, if any. A sender whose line
    /// is not a request is answered [`Reply::Failed`] here; one that says
    /// nothing in time is dropped.
    pub fn next(&self) -> Option<Incoming> {
        loop {
            let stream = self.listener.accept().ok()??;
            let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
            let line = match read_request(&stream) {
                Ok(line) if !line.is_empty() => line,
                _ => continue,
            };
            match serde_json::from_slice(&line) {
                Ok(request) => return Some(Incoming { request, stream }),
                Err(e) => Incoming::reply_on(
                    &stream,
                    &Reply::Failed {
                        message: format!("not a control request: {e}"),
                    },
                ),
            }
        }
    }
}

/// One request line: its first bytes within [`REQUEST_TIMEOUT`], all of
/// it within [`REQUEST_DEADLINE`], at most [`MAX_REQUEST_BYTES`]. A sender
/// writes one line, then waits for the answer: nothing follows the newline.
fn read_request(stream: &UnixStream) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let limit = match line.is_empty() {
            true => REQUEST_TIMEOUT,
            false => REQUEST_DEADLINE,
        };
        let left = limit
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        stream.set_read_timeout(Some(left))?;
        let n = match (&mut &*stream).read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(line);
        }
        if let Some(end) = chunk[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..=end]);
            return Ok(line);
        }
        line.extend_from_slice(&chunk[..n]);
        if line.len() as u64 > MAX_REQUEST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control request too long",
            ));
        }
    }
}

impl Incoming {
    /// Sends the answer (a sender that went away meanwhile is no error).
    pub fn answer(self, reply: &Reply) {
        Incoming::reply_on(&self.stream, reply);
    }

    fn reply_on(mut stream: &UnixStream, reply: &Reply) {
        if let Ok(mut line) = serde_json::to_vec(reply) {
            line.push(b'\n');
            let _ = stream.write_all(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large request whose sender pauses longer than the first-byte
    /// timeout between writes (a loaded machine) still arrives whole.
    #[test]
    fn a_slow_large_request_arrives_whole() {
        let dir = tempfile::tempdir().unwrap();
        let id: TaskId = "bg-0000000000000002".parse().unwrap();
        let channel = Channel::open(dir.path(), &id).unwrap();
        let data = "x".repeat(1 << 20);
        let request = Control::Input {
            data: data.clone(),
            eof: false,
        };
        let mut line = serde_json::to_vec(&request).unwrap();
        line.push(b'\n');
        let path = crate::store::control_socket_path(dir.path(), &id);
        let sender = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(path).unwrap();
            let half = line.len() / 2;
            stream.write_all(&line[..half]).unwrap();
            // Longer than REQUEST_TIMEOUT: the monitor must keep reading.
            std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(200));
            stream.write_all(&line[half..]).unwrap();
            let mut answer = String::new();
            BufReader::new(stream).read_line(&mut answer).unwrap();
            answer
        });
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let incoming = loop {
            assert!(
                std::time::Instant::now() < give_up,
                "the request was dropped"
            );
            let wait = Some(Duration::from_millis(100));
            process::wait_ready(&[channel.as_fd()], None, wait).unwrap();
            if let Some(incoming) = channel.next() {
                break incoming;
            }
        };
        assert_eq!(incoming.request, Control::Input { data, eof: false });
        incoming.answer(&Reply::Done);
        assert!(sender.join().unwrap().contains("done"));
    }

    #[test]
    fn requests_and_replies_travel_as_json_lines() {
        let kill = Control::Kill { grace_ms: 250 };
        let text = serde_json::to_string(&kill).unwrap();
        assert_eq!(text, r#"{"kill":{"grace_ms":250}}"#);
        assert_eq!(serde_json::from_str::<Control>(&text).unwrap(), kill);
        let reply = Reply::NotSupported {
            request: "resize".into(),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"reply":"not_supported","request":"resize"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }

    #[test]
    fn a_request_reaches_the_channel_and_its_answer_the_sender() {
        let home = tempfile::tempdir().unwrap();
        let id = TaskId::random();
        assert!(!is_reachable(home.path(), &id));
        assert!(send(home.path(), &id, &Control::Watch).is_err());
        let channel = Channel::open(home.path(), &id).unwrap();
        assert!(is_reachable(home.path(), &id));
        let server = std::thread::spawn(move || {
            // The reachability probe above connected and said nothing.
            loop {
                let fd = channel.as_fd();
                process::wait_readable(&[fd], None).unwrap();
                if let Some(incoming) = channel.next() {
                    let request = incoming.request.clone();
                    incoming.answer(&Reply::Done);
                    return (request, channel);
                }
            }
        });
        let reply = send(home.path(), &id, &Control::Kill { grace_ms: 5 }).unwrap();
        assert_eq!(reply, Reply::Done);
        let (request, channel) = server.join().unwrap();
        assert_eq!(request, Control::Kill { grace_ms: 5 });
        drop(channel);
        assert!(!control_socket_path(home.path(), &id).exists());
        assert!(send(home.path(), &id, &Control::Watch).is_err());
    }
}
