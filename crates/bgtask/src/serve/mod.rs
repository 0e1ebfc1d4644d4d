//! `bgtask serve`: JSON-RPC 2.0 over newline-delimited JSON on stdio, for
//! agent plugins. A thin adapter over the core `Service`: it keeps no task
//! state of its own beyond which completions it has already pushed.
//!
//! Requests run concurrently, so a long `bash_wait` never delays other
//! requests: quick ones on tokio's blocking pool, the ones that wait for
//! tasks (`bash`, `bash_wait`, `bash_kill`) on threads of their own, under
//! a separate limit, so waiting requests can never take every slot quick
//! ones need. `initialize` is a barrier: it runs before the next line is
//! read, and each request acts for the session current when its line was
//! read. stdout carries protocol lines only; one writer task owns it.

mod methods;
mod notices;
mod push;

use std::sync::{Arc, RwLock};

use anyhow::Result;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};

use bgtask_core::{Config, Service};

use bgtask_core::protocol::rpc::{self, Incoming, RpcError};

use methods::Class;

/// Where outgoing lines go (the single stdout writer), without newline.
pub type Outbox = mpsc::UnboundedSender<String>;

/// Waiting requests that run at once; more wait in line for one to end.
/// Separate from tokio's blocking pool (512 threads), which serves the
/// quick requests. Each waiting request holds a thread and one or two
/// file descriptors, so this stays well inside the common 1024-descriptor
/// limit. docs/protocol.md states it.
const MAX_WAITING: usize = 512;

/// State shared by request handlers and the push thread.
pub struct Server {
    base: Config,
    current: RwLock<Session>,
    out: Outbox,
}

/// The session the server acts for, and its settings.
#[derive(Clone)]
pub struct Session {
    pub service: Arc<Service>,
    pub project_root: Option<std::path::PathBuf>,
    pub long_running_interval_ms: u64,
    /// Bumped on every `initialize` (by `Server::switch`), so the push
    /// thread notices.
    pub generation: u64,
    /// The newest outbox sequence number when the session became current:
    /// completions after it are pushed, earlier ones are left to drain.
    pub pushed_after: i64,
    /// The same for notifications of the other kinds (issue 16).
    pub notes_after: i64,
}

/// Default interval of `bash_long_running` reminders.
pub const DEFAULT_REMINDER_MS: u64 = 600_000;

impl Server {
    fn session(&self) -> Session {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `session` current with the next generation number, taken
    /// under the same lock so two `initialize` calls never share one.
    fn switch(&self, mut session: Session) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        session.generation = current.generation + 1;
        *current = session;
    }

    fn send(&self, message: String) {
        // The writer only goes away when stdout is closed; then nobody is
        // listening and dropping the message is right.
        let _ = self.out.send(message);
    }
}

/// Runs the server until stdin ends.
pub fn run(config: Config) -> Result<u8> {
    // A server retries what fails (the push thread does, clients may), so
    // it may choose to fail sooner than the 30 s a command waits for a
    // store lock held by another process.
    if let Some(ms) = std::env::var_os("BGTASK_BUSY_TIMEOUT_MS") {
        let ms: u64 = ms
            .to_str()
            .and_then(|ms| ms.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("BGTASK_BUSY_TIMEOUT_MS: expected milliseconds"))?;
        bgtask_core::set_busy_timeout(std::time::Duration::from_millis(ms));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = runtime.block_on(serve(config));
    // Blocking workers may still be in a long wait (a request whose client
    // is gone, the stdin reader); they must not keep the process alive.
    runtime.shutdown_background();
    code
}

async fn serve(config: Config) -> Result<u8> {
    let service = Arc::new(Service::open(config.clone())?);
    // Read before the first request, so a task that ends after it is pushed.
    let pushed_after = service.last_completion_seq()?;
    let notes_after = service.last_notification_seq()?;
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    let server = Arc::new(Server {
        base: config,
        current: RwLock::new(Session {
            service,
            project_root: None,
            long_running_interval_ms: DEFAULT_REMINDER_MS,
            generation: 0,
            pushed_after,
            notes_after,
        }),
        out,
    });
    // The push thread holds a sender for the server's whole life, so the
    // channel never closes by itself: the writer stops on `stop`, after
    // writing whatever is already queued.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        // A finished oneshot must not be polled again (it panics), and more
        // lines may still be queued after `stop`.
        let mut stopping = false;
        loop {
            let message = tokio::select! {
                message = outgoing.recv() => message,
                _ = &mut stopped, if !stopping => {
                    stopping = true;
                    outgoing.close();
                    outgoing.recv().await
                }
            };
            let Some(mut line) = message else { break };
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    push::start(Arc::clone(&server));

    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    loop {
        line.clear();
        let n = read_line(&mut stdin, &mut line).await?;
        if n == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match rpc::decode(&line) {
            Incoming::Invalid(reply) => server.send(reply),
            Incoming::Notification { method } => tracing::debug!("ignoring notification {method}"),
            Incoming::Request { id, method, params } => {
                // Taken now, in line order: a request acts for the session
                // of the `initialize` calls before it, however long it waits.
                let session = server.session();
                let server = Arc::clone(&server);
                let request = Request {
                    id,
                    method,
                    params,
                    session,
                };
                match methods::class(&request.method) {
                    Class::Barrier => {
                        // Changes what later lines act for: finish it before
                        // reading them.
                        let _ = tokio::task::spawn_blocking(move || request.answer(&server)).await;
                    }
                    Class::Quick => {
                        in_flight.spawn_blocking(move || request.answer(&server));
                    }
                    Class::Waiting => {
                        let waiting = Arc::clone(&waiting);
                        in_flight.spawn(request.answer_on_own_thread(server, waiting));
                    }
                }
            }
        }
        // Forget finished handlers so the set does not grow without bound.
        while in_flight.try_join_next().is_some() {}
    }
    // End of input: answer what was asked, then stop. Tasks keep running.
    while in_flight.join_next().await.is_some() {}
    let _ = stop.send(());
    let _ = writer.await;
    Ok(0)
}

/// One request, with the session it acts for.
struct Request {
    id: rpc::Id,
    method: String,
    params: serde_json::Value,
    session: Session,
}

impl Request {
    fn answer(self, server: &Server) {
        let reply = match methods::call(server, &self.session, &self.method, self.params) {
            Ok(result) => rpc::result_reply(&self.id, result),
            Err(err) => rpc::error_reply(&self.id, &err),
        };
        server.send(reply);
    }

    /// Answers on a thread of its own once one of the `MAX_WAITING`
    /// places is free (in arrival order); resolves when answered.
    async fn answer_on_own_thread(self, server: Arc<Server>, waiting: Arc<Semaphore>) {
        // The semaphore is never closed.
        let Ok(place) = waiting.acquire_owned().await else {
            return;
        };
        let id = self.id.clone();
        let (answered, done) = tokio::sync::oneshot::channel::<()>();
        let thread_server = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("bgtask-wait".into())
            .spawn(move || {
                self.answer(&thread_server);
                drop(place);
                let _ = answered.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = done.await;
            }
            Err(e) => {
                let err = RpcError::new(
                    rpc::APPLICATION_ERROR,
                    format!("cannot start a thread for the request: {e}"),
                );
                server.send(rpc::error_reply(&id, &err));
            }
        }
    }
}

/// Reads one line (without the newline) into `buf`, refusing to buffer
/// more than the protocol's line limit: the rest of an overlong line is
/// skipped and the line is replaced by a marker the decoder rejects.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(total);
        }
        let (used, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = &chunk[..if done { used - 1 } else { used }];
        if buf.len() <= rpc::MAX_LINE_BYTES {
            buf.extend_from_slice(content);
        }
        total += used;
        reader.consume(used);
        if done {
            return Ok(total);
        }
    }
}
