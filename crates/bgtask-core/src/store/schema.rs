//! Database schema and its version. `PRAGMA user_version` holds the schema
//! version; a database from a newer bgtask is refused untouched.

use std::cell::Cell;
use std::ffi::c_int;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::ffi;
use rusqlite::{Connection, OpenFlags};

use super::CacheSize;
use crate::error::{Error, Result};

/// Schema changes after version 1, oldest first: `MIGRATIONS[i]` takes a
/// database from version `i + 1` to `i + 2`. Append, never edit a step.
const MIGRATIONS: &[&str] = &[
    // 2: the pid namespace the owner's and shell's pids were read in
    // (`pid:[inode]`), so a check from another namespace is "unknown".
    "ALTER TABLE tasks ADD COLUMN ns TEXT;",
    // 3: completion claims (store/outbox.rs): who holds a task's future
    // completion, and who claimed a completion for showing.
    "ALTER TABLE tasks ADD COLUMN hold_pid INTEGER;
     ALTER TABLE tasks ADD COLUMN hold_start INTEGER;
     ALTER TABLE tasks ADD COLUMN hold_boot TEXT;
     ALTER TABLE completions ADD COLUMN claim_pid INTEGER;
     ALTER TABLE completions ADD COLUMN claim_start INTEGER;
     ALTER TABLE completions ADD COLUMN claim_boot TEXT;",
    // 4 (issue 16): a task's readiness condition and its outcome, the
    // notifications of kinds other than `completed` (store/notify.rs), and
    // watches.
    "ALTER TABLE tasks ADD COLUMN ready_kind TEXT;
     ALTER TABLE tasks ADD COLUMN ready_value TEXT;
     ALTER TABLE tasks ADD COLUMN ready_timeout_ms INTEGER;
     ALTER TABLE tasks ADD COLUMN ready_kill INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tasks ADD COLUMN ready_at INTEGER;
     ALTER TABLE tasks ADD COLUMN ready_outcome TEXT;
     ALTER TABLE tasks ADD COLUMN ready_detail TEXT;
     CREATE TABLE IF NOT EXISTS notifications (
         seq        INTEGER PRIMARY KEY AUTOINCREMENT,
         task_id    TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
         session    TEXT NOT NULL,
         kind       TEXT NOT NULL,
         watch_id   TEXT,
         body       TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         acked_at   INTEGER
     );
     CREATE INDEX IF NOT EXISTS notifications_unacked ON notifications(session, acked_at, seq);
     CREATE TABLE IF NOT EXISTS watches (
         watch_id      TEXT PRIMARY KEY,
         task_id       TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
         session       TEXT NOT NULL,
         pattern       TEXT NOT NULL,
         once          INTEGER NOT NULL,
         cooldown_ms   INTEGER NOT NULL,
         created_at    INTEGER NOT NULL,
         ended_at      INTEGER,
         fired_at      INTEGER,
         pending       INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX IF NOT EXISTS watches_by_task ON watches(task_id);",
    // 5 (issue 18): how the task's stdin is connected (`stdin`,
    // `pty ROWSxCOLS`; NULL for /dev/null) and the signals sent to it
    // with `bgtask signal` (a JSON list of names, oldest first).
    "ALTER TABLE tasks ADD COLUMN io TEXT;
     ALTER TABLE tasks ADD COLUMN signals_sent TEXT;",
    // 6 (issue 22): a sandboxed task's effective confinement, as JSON
    // (`sandbox::Sandbox`); NULL for an unconfined task.
    "ALTER TABLE tasks ADD COLUMN sandbox TEXT;",
    // 7 (issue 19): the engine that runs the task (executor/) and its handle there
    // (a Slurm job id, recorded as soon as sbatch answers).
    "ALTER TABLE tasks ADD COLUMN executor TEXT NOT NULL DEFAULT 'local';
     ALTER TABLE tasks ADD COLUMN job_id TEXT;",
    // 8 (issue 21, pause): since when a `paused` task is paused, and
    // whether its monitor holds its tree stopped (store/pause.rs).
    "ALTER TABLE tasks ADD COLUMN paused_at INTEGER;
     ALTER TABLE tasks ADD COLUMN held INTEGER NOT NULL DEFAULT 0;",
    // 9 (issue 17): claims on the notifications beside completions
    // (store/notify.rs), as completions have (step 3): a hook, an MCP
    // result and serve's readers never show the same one.
    "ALTER TABLE notifications ADD COLUMN claim_pid INTEGER;
     ALTER TABLE notifications ADD COLUMN claim_start INTEGER;
     ALTER TABLE notifications ADD COLUMN claim_boot TEXT;",
    // 10 (issue 21): queues. A task's group, label, dependencies (JSON
    // lists of ids: `after_ok` must complete, `after_any` must end), the
    // time a delayed task may start, and when it entered the queue (NULL
    // for a task that never queued); the groups with their parallelism
    // (NULL: the store-wide limit) and pause flag.
    "ALTER TABLE tasks ADD COLUMN group_name TEXT NOT NULL DEFAULT 'default';
     ALTER TABLE tasks ADD COLUMN label TEXT;
     ALTER TABLE tasks ADD COLUMN after_ok TEXT;
     ALTER TABLE tasks ADD COLUMN after_any TEXT;
     ALTER TABLE tasks ADD COLUMN start_at INTEGER;
     ALTER TABLE tasks ADD COLUMN queued_at INTEGER;
     CREATE TABLE IF NOT EXISTS groups (
         name       TEXT PRIMARY KEY,
         parallel   INTEGER,
         paused     INTEGER NOT NULL DEFAULT 0,
         created_at INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks(group_name, status);",
];

/// The schema this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;
/// The per-row format this build writes; rows with a larger one are skipped.
pub(crate) const RECORD_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    task_id         TEXT PRIMARY KEY,
    record_version  INTEGER NOT NULL,
    session         TEXT NOT NULL,
    command         TEXT NOT NULL,
    cwd             TEXT NOT NULL,
    env_keys        TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL,
    exit_code       INTEGER,
    signal          TEXT,
    reason          TEXT,
    pid             INTEGER,
    pid_start       INTEGER,
    owner_pid       INTEGER,
    owner_start     INTEGER,
    boot_id         TEXT,
    cgroup          TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    timeout_ms      INTEGER,
    idle_timeout_ms INTEGER,
    max_output      INTEGER NOT NULL,
    notify          INTEGER NOT NULL,
    kill_grace_ms   INTEGER,
    dropped_bytes   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_session ON tasks(session, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created_at);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks(status);
CREATE TABLE IF NOT EXISTS completions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          TEXT NOT NULL UNIQUE REFERENCES tasks(task_id) ON DELETE CASCADE,
    session          TEXT NOT NULL,
    output_preview   TEXT NOT NULL,
    output_truncated INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    acked_at         INTEGER
);
CREATE INDEX IF NOT EXISTS completions_unacked ON completions(session, acked_at, seq);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// WAL frames after which a commit checkpoints (SQLite's default is 1000).
const WAL_CHECKPOINT_PAGES: i32 = 100;

/// Opens the database, creating or upgrading the schema as needed.
///
/// SQLite answers "database is locked" at once (no busy wait) to a
/// connection that reads while another switches a new database to WAL.
/// Creating or upgrading the database under an exclusive file lock makes
/// that race-free. A database already in WAL mode at this schema needs
/// neither, so its opens take no lock at all: no process, even a stopped
/// one, can then keep the others from opening the store.
///
/// Whether it is ready is asked of SQLite itself, never read from the file
/// with a descriptor of our own: closing any descriptor of the database
/// drops every POSIX lock this process holds on it, including those of
/// SQLite connections already open here, and another process closing its
/// connection then takes itself for the last one and deletes the WAL that
/// ours still write to.
pub(super) fn open(path: &Path, cache: CacheSize) -> Result<Connection> {
    if path.exists() {
        if let Some(conn) = open_ready(path, cache)? {
            return Ok(conn);
        }
    }
    let _open_lock = super::home::lock_for_open(path)?;
    super::home::ensure_private_db(path)?;
    crate::process::fault::stop_point("stop_in_open_lock");
    let conn = connect(path, cache)?;
    let err = |source| super::store_error(path, source);
    let version = schema_version(&conn).map_err(err)?;
    refuse_newer(path, version)?;
    if version < SCHEMA_VERSION {
        create(&conn).map_err(err)?;
    }
    Ok(conn)
}

/// A store from a newer bgtask is refused untouched.
fn refuse_newer(path: &Path, version: i64) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::NewerStore {
            path: path.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The connection if the database is in WAL mode at this schema; `None` if
/// it must be created or upgraded (or is being switched to WAL right now).
fn open_ready(path: &Path, cache: CacheSize) -> Result<Option<Connection>> {
    let conn = connect(path, cache)?;
    let ready = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .and_then(|mode| Ok((mode, schema_version(&conn)?)));
    match ready {
        Ok((mode, version)) if mode == "wal" && version == SCHEMA_VERSION => Ok(Some(conn)),
        Ok((_, version)) => refuse_newer(path, version).map(|()| None),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Ok(None)
        }
        Err(e) => Err(super::store_error(path, e)),
    }
}

/// The schema version; a database from a newer bgtask is refused.
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// A configured connection (busy handler, pragmas, WAL checkpoints).
fn connect(path: &Path, cache: CacheSize) -> Result<Connection> {
    let err = |source| super::store_error(path, source);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    super::quiet::note_connected();
    let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    // SAFETY: a valid connection handle; the handler's argument is that
    // same handle, which outlives every call SQLite makes to the handler.
    let rc = unsafe {
        ffi::sqlite3_busy_handler(
            conn.handle(),
            Some(retry_while_busy),
            conn.handle().cast::<std::ffi::c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            None,
        )));
    }
    let cache_kib = match cache {
        CacheSize::Small => 64,
        CacheSize::Default => 2048,
    };
    // WAL lets readers proceed while a writer commits. synchronous=NORMAL in
    // WAL mode survives any process crash (the fault model bgtask defends
    // against); only an OS crash or power loss can drop the last commits.
    //
    // Most connections live for one command. By default the last one to
    // close checkpoints the WAL (two fsyncs) and deletes it with its index,
    // and the next one re-creates both and fsyncs the new WAL header. So
    // connections skip the checkpoint on close, and the WAL stays; a
    // committing writer checkpoints it instead (`checkpoint_when_due`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(&err)?;
    // SAFETY: a valid connection handle; the hook keeps no pointer.
    unsafe {
        ffi::sqlite3_wal_hook(
            conn.handle(),
            Some(checkpoint_when_due),
            std::ptr::null_mut(),
        );
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib};"
    ))
    .map_err(&err)?;
    Ok(conn)
}

/// An empty database in memory with the current schema: what a read of a
/// store that does not exist sees.
pub(super) fn open_empty() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    create_schema(&conn)?;
    Ok(conn)
}

thread_local! {
    /// Set while `checkpoint_when_due` runs: it must not wait for readers.
    static CHECKPOINTING: Cell<bool> = const { Cell::new(false) };
}

/// After a commit, once the WAL holds `WAL_CHECKPOINT_PAGES` frames, copies
/// them into the database and truncates the WAL to nothing.
///
/// SQLite's own automatic checkpoint leaves the frames in place for the
/// next writer to overwrite. But the checkpointed mark lives only in the
/// shared-memory index, which the first connection to open an idle store
/// rebuilds from the WAL file: with no connection open between commands,
/// every command forgot the checkpoint, so the WAL never restarted and
/// every commit checkpointed it all again (three fsyncs each). An empty WAL
/// has nothing to forget and nothing to rebuild.
///
/// The frames are copied first by a passive checkpoint, which runs beside
/// other writers; only when all of them are copied does a truncating one
/// take the write lock, to empty the WAL. A truncating checkpoint alone
/// holds that lock while it copies and fsyncs, and with many monitors
/// recording their ends at once every other writer backed off behind it:
/// stopping 1000 tasks took 17 s instead of about 2 s.
///
/// Never waits: a reader or writer in the way makes it give up until the
/// next commit (the commit itself has happened either way).
///
/// Called by SQLite after each commit (`sqlite3_wal_hook`; rusqlite's
/// wrapper needs its `hooks` feature, whose extra work on every open and
/// close cost about 15 page faults and 0.1 ms per command).
extern "C" fn checkpoint_when_due(
    _: *mut std::ffi::c_void,
    db: *mut ffi::sqlite3,
    name: *const std::ffi::c_char,
    frames: c_int,
) -> c_int {
    if frames >= WAL_CHECKPOINT_PAGES {
        CHECKPOINTING.with(|c| c.set(true));
        let (mut log, mut copied) = (0, 0);
        // SAFETY: the connection and database name SQLite passed us.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut log,
                &mut copied,
            )
        };
        if rc == ffi::SQLITE_OK && copied == log {
            // SAFETY: as above.
            unsafe {
                ffi::sqlite3_wal_checkpoint_v2(
                    db,
                    name,
                    ffi::SQLITE_CHECKPOINT_TRUNCATE,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        CHECKPOINTING.with(|c| c.set(false));
    }
    ffi::SQLITE_OK
}

/// How long a statement waits for another connection's lock before it
/// fails with "database is locked", in milliseconds (see
/// [`set_busy_timeout`]).
static BUSY_TIMEOUT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Sets how long this process's statements wait for another process's
/// lock (30 s by default). Only whole processes that can retry on their
/// own set it (`bgtask serve`, from `BGTASK_BUSY_TIMEOUT_MS`), never a
/// monitor.
pub fn set_busy_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    BUSY_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

thread_local! {
    /// Consecutive looks that found the write lock held only by stopped
    /// processes, during the current busy wait.
    static STOPPED_LOOKS: Cell<u32> = const { Cell::new(0) };
}

/// SQLite's default busy handler sleeps in steps of up to 100 ms, which
/// turns brief write contention (many monitors ending at once) into long
/// stalls. Writers here hold the lock for well under a millisecond, so retry
/// quickly at first, then back off; give up after the busy timeout (30 s
/// unless `set_busy_timeout` changed it).
///
/// 30 s is kept as the bound for a live holder: 1000 monitors recording
/// their ends at once keep writers waiting for seconds, and a monitor
/// retries its final write anyway. But a process that holds the lock while
/// stopped (SIGSTOP, ^Z, a debugger) releases nothing until resumed: from
/// about 0.7 s on, every 0.5 s, the handler looks at who holds the write
/// lock (`/proc/locks`), and gives up once it has seen only stopped holders
/// twice in a row. The error then names them (`store_error`).
extern "C" fn retry_while_busy(db: *mut std::ffi::c_void, attempt: c_int) -> c_int {
    if CHECKPOINTING.with(Cell::get) {
        return 0;
    }
    if attempt == 0 {
        STOPPED_LOOKS.with(|c| c.set(0));
    }
    // Time slept so far, in microseconds, and the next pause.
    let attempt = u64::try_from(attempt).unwrap_or(0);
    let (waited_us, pause) = match attempt {
        0..=49 => (attempt * 100, Duration::from_micros(100)),
        50..=199 => (5_000 + (attempt - 50) * 1_000, Duration::from_millis(1)),
        _ => (
            155_000 + (attempt - 200) * 10_000,
            Duration::from_millis(10),
        ),
    };
    if waited_us
        >= BUSY_TIMEOUT_MS
            .load(Ordering::Relaxed)
            .saturating_mul(1_000)
    {
        return 0;
    }
    if attempt >= 250 && attempt % 50 == 0 {
        // SAFETY: `db` is the connection handle registered with this
        // handler, valid while SQLite calls it; the name it returns lives
        // as long as the connection and is only read here.
        let name = unsafe { ffi::sqlite3_db_filename(db.cast(), c"main".as_ptr()) };
        if !name.is_null() {
            // SAFETY: a NUL-terminated string owned by SQLite (see above).
            let name = unsafe { std::ffi::CStr::from_ptr(name) };
            let path = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let holders = super::holders::db_writers(path);
            let stopped = !holders.is_empty() && holders.iter().all(|h| h.stopped);
            let looks = STOPPED_LOOKS.with(|c| {
                c.set(if stopped { c.get() + 1 } else { 0 });
                c.get()
            });
            if looks >= 2 {
                return 0;
            }
        }
    }
    std::thread::sleep(pause);
    1
}

fn create(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    debug_assert_eq!(mode, "wal");
    create_schema(conn)
}

/// Creates or upgrades the tables, in one transaction.
fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Another process may have created the schema while we waited.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(SCHEMA_V1)?;
    }
    if version < SCHEMA_VERSION {
        let done = usize::try_from(version.max(1) - 1).unwrap_or(0);
        for step in &MIGRATIONS[done..] {
            conn.execute_batch(step)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    conn.execute_batch("COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_ready_so_later_opens_take_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bgtask.db");
        let conn = open(&db, CacheSize::Small).unwrap();
        assert!(open_ready(&db, CacheSize::Small).unwrap().is_some());
        drop(conn);
        // A store of the first schema is upgraded under the lock by the
        // next open (every migration step).
        let old = dir.path().join("old.db");
        let conn = Connection::open(&old).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        drop(conn);
        assert!(open_ready(&old, CacheSize::Small).unwrap().is_none());
        let conn = open(&old, CacheSize::Small).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        conn.query_row("SELECT ns, hold_pid FROM tasks LIMIT 1", [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })
            .unwrap();
        drop(conn);
        assert!(open_ready(&old, CacheSize::Small).unwrap().is_some());
    }
}
