//! Makes glibc's malloc give back to the operating system the memory it no longer uses.
//!
//! Two of glibc's habits hold memory that a request burst needed once:
//! - a freed allocation above the mmap threshold raises that threshold to its size, so the
//!   next allocation of that size is carved from the thread's arena instead, and stays
//!   resident once freed: argon2's 19 MiB block, released when the hashing thread goes idle,
//!   would stay in its arena. A threshold set once, here, is never raised.
//! - what a thread frees stays in its arena for reuse; by itself glibc returns only the free
//!   space at an arena's very top. After a run of list pages or writes the workers' arenas
//!   stay at their high-water mark (measured: ~10 MiB after the benchmark's write workloads).
//!   `malloc_trim` returns every whole free page in every arena; a thread does it every few
//!   seconds (it holds each arena's lock while it walks that arena: rarely, not per burst).
//!
//! Elsewhere (another C library, or another allocator) nothing is done.

use std::{thread, time::Duration};

/// Allocations from this size up get pages of their own, returned when freed. Above any
/// request's buffer, so the hot path never maps and unmaps.
const OWN_PAGES_FROM_BYTES: i32 = 1 << 20;

/// How often free pages inside the arenas are returned: often enough that one burst's
/// leftovers are gone before the next, rarely enough that the walk's lock is not felt.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Sets the allocator's thresholds and starts the thread that trims the heap. Called by `main`
/// for the server, before the runtime's threads exist.
pub fn return_free_memory() -> std::io::Result<()> {
    fix_mmap_threshold();
    thread::Builder::new()
        .name("memory-trim".into())
        .spawn(|| {
            loop {
                thread::sleep(TRIM_EVERY);
                trim();
            }
        })
        .map(drop)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fix_mmap_threshold() {
    // SAFETY: mallopt takes no pointer and changes only glibc's own settings, under its lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM_BYTES);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only releases pages of free chunks, under each
    // arena's lock; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
