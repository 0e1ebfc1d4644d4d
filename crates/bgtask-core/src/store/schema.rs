//! Database schema and its version. `PRAGMA user_version` holds the schema
//! version; a database from a newer bgtask is refused untouched.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::ffi;
use rusqlite::{Connection, OpenFlags};

use super::CacheSize;
use crate::error::{Error, Result};

/// Schema changes after version 1, oldest first: `MIGRATIONS[i]` takes a
/// database from version `i + 1` to `i + 2`. Append, never edit a step.
const MIGRATIONS: &[&str] = &[];

/// The schema this build writes.
pub(super) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;
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
pub(super) fn open(path: &Path, cache: CacheSize) -> Result<Connection> {
    let err = |source| Error::Store {
        path: path.to_owned(),
        source,
    };
    // SQLite answers "database is locked" at once (no busy wait) to a
    // connection that reads while another switches a new database to WAL.
    // Opening under an exclusive file lock makes creation race-free; it is
    // held only for the open, never while the store is used.
    let _open_lock = super::home::lock_for_open(path)?;
    super::home::ensure_private_db(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_handler(Some(retry_while_busy)).map_err(err)?;
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
        .map_err(err)?;
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
    .map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(Error::NewerStore {
            path: path.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        create(&conn).map_err(err)?;
    }
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

/// SQLite's default busy handler sleeps in steps of up to 100 ms, which
/// turns brief write contention (many monitors ending at once) into long
/// stalls. Writers here hold the lock for well under a millisecond, so retry
/// quickly at first, then back off; give up after about 30 seconds.
fn retry_while_busy(attempt: i32) -> bool {
    if CHECKPOINTING.with(Cell::get) {
        return false;
    }
    let pause = match attempt {
        0..=49 => Duration::from_micros(100),
        50..=199 => Duration::from_millis(1),
        200..=3_200 => Duration::from_millis(10),
        _ => return false,
    };
    std::thread::sleep(pause);
    true
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
