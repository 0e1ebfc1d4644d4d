//! "Has anything been committed to the store since?", answered without
//! opening SQLite (issue 17: the inject hook runs on every prompt and
//! tool call of an agent, and opening SQLite and parsing the schema is
//! most of its cost when nothing is pending).
//!
//! The answer is the WAL index header, the first 48 bytes of
//! `bgtask.db-shm` (SQLite's `WalIndexHdr`, stored twice): every commit
//! rewrites it (its change counter, `mxFrame`, the last frame's checksum),
//! and a WAL restart after a checkpoint gives it new salts. A reader of
//! SQLite sees exactly the commits this header counts, so an unchanged
//! header means an unchanged database. Both copies must be equal (a
//! writer writes the second, then the first): a header read mid-update
//! reads as "changed", which only costs a full read.
//!
//! The file is read with a descriptor of our own, so this must run
//! before the process opens any connection to the store: closing a
//! descriptor of the `-shm` file would drop the POSIX locks a connection
//! of this process holds on it (`CONNECTED` refuses it afterwards).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::home::DB_NAME;

/// Set once this process opened a connection to a store file.
static CONNECTED: AtomicBool = AtomicBool::new(false);

/// SQLite's WAL index header: 48 bytes, twice.
const HEADER: usize = 48;
/// `iVersion` of the WAL index (`WALINDEX_MAX_VERSION`).
const WAL_INDEX_VERSION: u32 = 3_007_000;

/// Records that this process now holds (or held) a connection: from here
/// on, [`commit_mark`] declines to open the `-shm` file.
pub(super) fn note_connected() {
    CONNECTED.store(true, Ordering::SeqCst);
}

/// The store's commit mark: the database file's identity and its WAL
/// index header, as text. `None` when it cannot be told (no WAL index, a
/// header being written, this process already connected): the caller
/// then reads the database.
pub fn commit_mark(home: &Path) -> Option<String> {
    if CONNECTED.load(Ordering::SeqCst) {
        return None;
    }
    let db = home.join(DB_NAME);
    let meta = std::fs::symlink_metadata(&db).ok()?;
    let mut shm = std::fs::File::open(home.join(format!("{DB_NAME}-shm"))).ok()?;
    let mut bytes = [0_u8; 2 * HEADER];
    shm.read_exact(&mut bytes).ok()?;
    let (first, second) = bytes.split_at(HEADER);
    // iVersion (native byte order, as SQLite writes it) and isInit.
    let version = u32::from_ne_bytes([first[0], first[1], first[2], first[3]]);
    // mxFrame: an index of an empty or absent WAL (a store just opened
    // again after every connection closed and the WAL was deleted) carries
    // no random salt and looks the same each time, whatever was committed
    // in between; only a header of a written WAL is a mark.
    let frames = u32::from_ne_bytes([first[16], first[17], first[18], first[19]]);
    if first != second || version != WAL_INDEX_VERSION || first[12] != 1 || frames == 0 {
        return None;
    }
    let mut mark = format!("{}:{}:", meta.dev(), meta.ino());
    for byte in first {
        mark.push_str(&format!("{byte:02x}"));
    }
    Some(mark)
}
