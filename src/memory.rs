//! The memory budget (`--max-memory`): one count, shared by every worker, of
//! the bytes all connections hold for their peers, and giving freed memory
//! back to the operating system.
//!
//! Memory owed to peers lives in fixed-size chunks ([`CHUNK_SIZE`]), so the
//! budget counts chunks: a chunk is charged when a queue takes it from its
//! worker's pool and credited when it goes back. The steady echo queues
//! nothing and never touches the count; a queued remainder touches it once
//! per 16 KiB. The policy that keeps the total under the budget (reading
//! pauses, a small guaranteed share per connection, eviction of the biggest
//! holders) is docs/RELIABILITY.md's and the worker's; this module only counts.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes per pooled chunk: large enough that one `writev` of 64 chunks moves
/// 1 MiB, small enough that a slow reader pins little beyond its limit and a
/// small remainder wastes little. The budget's unit.
pub const CHUNK_SIZE: usize = 16 * 1024;

/// Bytes held for peers by all workers, against `--max-memory`.
///
/// `Relaxed` suffices: it is a count compared with a limit, nothing else is
/// synchronized through it, and a decision made on a value a few chunks old
/// is still within the share each connection is granted.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The configured budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether more may be held without going over the budget.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.used() < self.limit
    }

    /// Counts one chunk taken by a queue.
    #[inline]
    pub fn charge_chunk(&self) {
        self.used.fetch_add(CHUNK_SIZE, Ordering::Relaxed);
    }

    /// Counts one chunk given back; each must have been charged.
    #[inline]
    pub fn credit_chunk(&self) {
        let before = self.used.fetch_sub(CHUNK_SIZE, Ordering::Relaxed);
        debug_assert!(before >= CHUNK_SIZE, "credited a chunk never charged");
    }
}

/// Returns the heap's free pages to the operating system (glibc's
/// `malloc_trim`), in every arena, so a burst's memory does not stay
/// resident once it is freed. Measured with 1,000 clients that each sent
/// 4 MB and never read: after they left, echod's RSS stayed at 1,067 MiB,
/// because freed 16 KiB chunks sit in the heap below chunks still in use and
/// glibc only trims the heap's top; `malloc_trim(0)` brought it to 20 MiB.
/// Walks the heap: call it once after a burst, never per message.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_chunks_against_its_limit() {
        let budget = MemoryBudget::new(2 * CHUNK_SIZE);
        assert!(budget.has_room());
        budget.charge_chunk();
        assert!(budget.has_room());
        budget.charge_chunk();
        assert!(!budget.has_room(), "full at the limit");
        assert_eq!(budget.used(), 2 * CHUNK_SIZE);
        budget.credit_chunk();
        assert!(budget.has_room());
        assert_eq!(budget.limit(), 2 * CHUNK_SIZE);
        return_free_memory();
    }
}
