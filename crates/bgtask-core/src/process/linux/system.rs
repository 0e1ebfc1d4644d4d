//! Small queries and settings of the calling process and its filesystems:
//! access, free space, uid, randomness, and dropping start-up pages.

use std::io;
use std::path::Path;

/// Whether the calling process may enter `dir` (search permission).
pub fn can_enter(dir: &Path) -> io::Result<()> {
    rustix::fs::access(dir, rustix::fs::Access::EXEC_OK).map_err(io::Error::from)
}

/// Bytes an unprivileged process may still write on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Size of the filesystem holding `path`, in bytes.
pub fn disk_size(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_blocks.saturating_mul(stat.f_frsize))
}

/// The calling process's effective user id.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            // getrandom cannot fail on Linux ≥ 3.17 once the pool is ready;
            // fall back to a time-and-pid mix rather than panicking.
            Err(_) => {
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
                    ^ ((std::process::id() as u64) << 32);
                for (i, b) in buf[filled..].iter_mut().enumerate() {
                    *b = (seed.rotate_left(i as u32 * 8) & 0xff) as u8;
                }
                return;
            }
        }
    }
}

/// Drops this process's page-table entries for the read-only segments of
/// every loaded object (code and constants, never RELRO, which holds
/// relocated pointers). The pages stay in the page cache, shared with every
/// other bgtask process, and come back with a minor fault when touched
/// again. A monitor calls this once its task runs, so its resident size is
/// what its wait loop uses, not everything its start-up touched.
pub fn release_startup_pages() {
    // SAFETY: dl_iterate_phdr passes valid program headers of loaded
    // objects. Only unwritable, page-aligned, file-backed segments outside
    // RELRO are dropped: their contents are exactly the file's, so a later
    // access maps the same bytes back.
    unsafe {
        libc::dl_iterate_phdr(Some(release_object), std::ptr::null_mut());
    }
}

unsafe extern "C" fn release_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    _data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: see release_startup_pages.
    unsafe {
        let info = &*info;
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            std::ffi::CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        // The vDSO is the kernel's, not a file: leave it alone.
        if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return 0;
        }
        let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
        let page = rustix::param::page_size();
        let span = |h: &libc::Elf64_Phdr| {
            let start = info.dlpi_addr as usize + h.p_vaddr as usize;
            let end = start + h.p_memsz as usize;
            (start.next_multiple_of(page), end / page * page)
        };
        let relro = headers
            .iter()
            .find(|h| h.p_type == libc::PT_GNU_RELRO)
            .map(span);
        for header in headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
        {
            let (start, end) = span(header);
            let overlaps_relro = relro.is_some_and(|(rs, re)| start < re && rs < end);
            if end > start && !overlaps_relro {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
        0
    }
}

/// The major and minor numbers of a device number (`st_dev`), as
/// `/proc/locks` shows them.
pub fn device_numbers(dev: u64) -> (u64, u64) {
    (
        u64::from(rustix::fs::major(dev)),
        u64::from(rustix::fs::minor(dev)),
    )
}
