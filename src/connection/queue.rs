//! The per-connection outbound queue: what the socket did not take yet.
//!
//! Bytes are copied into fixed-size chunks borrowed from a per-loop
//! [`ChunkPool`], so steady state allocates nothing: a chunk drained by a write
//! goes back to the pool and the next connection that queues reuses it. An
//! empty queue owns no chunk, and a queue that never held a byte is one
//! null pointer ([`OutQueue`]), so an idle connection pays 8 bytes for it.
//! Draining uses one vectored write over up to [`MAX_IOVECS`] chunks. The
//! queue is pure: it never touches a socket itself, only a `Write` it is
//! handed.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use crate::memory::MemoryBudget;

pub use crate::memory::CHUNK_SIZE;

/// Chunks offered to one `writev`: 64 x 16 KiB = 1 MiB, the default queue limit.
/// (Linux accepts up to 1024; more would only lengthen the stack array.)
pub const MAX_IOVECS: usize = 64;

/// Free chunks shared by every connection of one loop (one thread, no locks),
/// and the count of those lent out, charged to the daemon's [`MemoryBudget`].
///
/// Invariant: holds at most `max_free` idle chunks; extra chunks are freed.
/// `lent` chunks are in queues, and exactly those are charged to the budget.
#[derive(Debug)]
pub struct ChunkPool {
    free: Vec<Box<[u8]>>,
    max_free: usize,
    budget: Arc<MemoryBudget>,
    /// [`ChunkPool::read_len`] while the budget has room.
    full_read: usize,
    /// What [`ChunkPool::read_len`] returns.
    read_len: usize,
    /// What [`ChunkPool::steady`] returns.
    steady: u8,
    /// Lending more chunks than this at once is a burst to watch.
    watch: usize,
    /// Lending went past `watch` since the last settle.
    watching: bool,
    /// Chunks in queues now.
    lent: usize,
    /// The most chunks lent at once since the last [`ChunkPool::settle`].
    peak_lent: usize,
    /// Chunks ever allocated (tests check that a steady state keeps it flat).
    #[cfg(test)]
    allocated: u64,
}

impl ChunkPool {
    /// A pool that keeps up to `max_free` idle chunks for reuse and charges
    /// the chunks it lends to `budget`; reads are `full_read` bytes while the
    /// budget has room.
    pub fn new(max_free: usize, budget: Arc<MemoryBudget>, full_read: usize, watch: usize) -> Self {
        ChunkPool {
            free: Vec::new(),
            max_free,
            budget,
            full_read,
            read_len: full_read,
            steady: super::Flags::STEADY,
            watch,
            watching: false,
            lent: 0,
            peak_lent: 0,
            #[cfg(test)]
            allocated: 0,
        }
    }

    fn take(&mut self) -> Box<[u8]> {
        self.budget.charge_chunk();
        self.refresh_read_len();
        self.lent += 1;
        self.peak_lent = self.peak_lent.max(self.lent);
        self.watching |= self.lent > self.watch;
        self.free.pop().unwrap_or_else(|| {
            #[cfg(test)]
            {
                self.allocated += 1;
            }
            vec![0u8; CHUNK_SIZE].into_boxed_slice()
        })
    }

    fn give_back(&mut self, chunk: Box<[u8]>) {
        self.budget.credit_chunk();
        self.refresh_read_len();
        self.lent -= 1;
        if self.free.len() < self.max_free {
            self.free.push(chunk);
        }
    }

    /// How much a connection may read at once: the whole loop buffer while
    /// the budget has room, one guaranteed share once it is spent. Seen by
    /// this worker as of its last chunk lent or returned: when other workers
    /// spend the budget, this one caps its reads as soon as it queues
    /// anything itself, which is when its reads would start to cost memory.
    #[inline]
    pub fn read_len(&self) -> usize {
        self.read_len
    }

    /// What the connections' steady-echo test compares their flags with:
    /// the steady state while the budget has room, nothing they can match
    /// while it is spent (their reads are capped, on the general path).
    #[inline(always)]
    pub(super) fn steady(&self) -> u8 {
        self.steady
    }

    fn refresh_read_len(&mut self) {
        let room = self.budget.has_room();
        self.read_len = if room { self.full_read } else { CHUNK_SIZE };
        self.steady = if room {
            super::Flags::STEADY
        } else {
            super::Flags::NEVER
        };
    }

    /// The budget the lent chunks are charged to.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Whether lending went past the pool's `watch` at once since the last
    /// settle: memory grew, and may need giving back once the burst is over.
    #[inline(always)]
    pub fn grew(&self) -> bool {
        self.watching
    }

    /// Whether lending has fallen to a quarter of its peak: the burst is over.
    pub fn burst_over(&self) -> bool {
        self.lent <= self.peak_lent / 4
    }

    /// After a burst: keeps at most `keep` idle chunks, frees the rest and
    /// starts watching for the next burst from what is lent now.
    pub fn settle(&mut self, keep: usize) {
        self.free.truncate(keep);
        self.free.shrink_to_fit();
        self.peak_lent = self.lent;
        self.watching = self.lent > self.watch;
    }

    /// Chunks ever allocated by this pool (a steady state keeps this flat).
    #[cfg(test)]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Idle chunks kept for reuse.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

/// One pooled buffer; bytes `start..end` are still to be written.
#[derive(Debug)]
struct Chunk {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Bytes owed to one peer, in order: one pointer while nothing was ever
/// queued, so an idle connection carries 8 bytes for its queue, not a
/// 32-byte `VecDeque` and a length.
///
/// The ring is allocated the first time bytes are queued and kept for the
/// connection's life (most connections never queue; one that did is
/// likely to again, and must not allocate each time). The ring of chunk
/// handles keeps its capacity once grown too (at most about
/// `(queue limit + one read) / CHUNK_SIZE` entries of 24 bytes), so a
/// connection that fills and drains its queue again and again does not
/// allocate.
#[derive(Debug, Default)]
pub struct OutQueue {
    ring: Option<Box<Ring>>,
}

/// The queue proper, behind [`OutQueue`]'s pointer.
///
/// Invariant: `len` equals the sum of `end - start` over the chunks, and no
/// chunk in the ring is empty.
#[derive(Debug, Default)]
struct Ring {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl OutQueue {
    /// An empty queue; allocates nothing.
    pub const fn new() -> Self {
        OutQueue { ring: None }
    }

    /// Bytes queued.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.ring {
            Some(ring) => ring.len,
            None => 0,
        }
    }

    /// Whether nothing is owed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`, filling the last chunk before taking new ones. The
    /// first bytes ever queued allocate the ring.
    pub fn push(&mut self, data: &[u8], pool: &mut ChunkPool) {
        if data.is_empty() {
            return;
        }
        self.ring.get_or_insert_with(Box::default).push(data, pool);
    }

    /// One write (vectored over up to [`MAX_IOVECS`] chunks) of the queued
    /// bytes. Returns what `out` took and whether it took all it was offered
    /// (when not, the socket buffer is full). Written chunks go back to `pool`.
    pub fn write_to<W: Write + ?Sized>(
        &mut self,
        out: &mut W,
        pool: &mut ChunkPool,
    ) -> io::Result<(usize, bool)> {
        match &mut self.ring {
            Some(ring) => ring.write_to(out, pool),
            None => Ok((0, true)),
        }
    }

    /// Drops everything queued (the peer is gone), returning chunks to `pool`.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        if let Some(ring) = &mut self.ring {
            ring.clear(pool);
        }
    }
}

impl Ring {
    fn push(&mut self, mut data: &[u8], pool: &mut ChunkPool) {
        self.len += data.len();
        if let Some(last) = self.chunks.back_mut() {
            let room = last.buf.len() - last.end;
            let n = room.min(data.len());
            last.buf[last.end..last.end + n].copy_from_slice(&data[..n]);
            last.end += n;
            data = &data[n..];
        }
        while !data.is_empty() {
            let mut buf = pool.take();
            let n = buf.len().min(data.len());
            buf[..n].copy_from_slice(&data[..n]);
            self.chunks.push_back(Chunk {
                buf,
                start: 0,
                end: n,
            });
            data = &data[n..];
        }
    }

    fn write_to<W: Write + ?Sized>(
        &mut self,
        out: &mut W,
        pool: &mut ChunkPool,
    ) -> io::Result<(usize, bool)> {
        let (written, offered) = match self.chunks.len() {
            0 => return Ok((0, true)),
            1 => {
                let c = &self.chunks[0];
                (out.write(&c.buf[c.start..c.end])?, c.end - c.start)
            }
            _ => {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                let mut offered = 0;
                for (slot, c) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(&c.buf[c.start..c.end]);
                    offered += c.end - c.start;
                    count += 1;
                }
                (out.write_vectored(&slices[..count])?, offered)
            }
        };
        self.consume(written, pool);
        Ok((written, written >= offered))
    }

    fn clear(&mut self, pool: &mut ChunkPool) {
        for chunk in self.chunks.drain(..) {
            pool.give_back(chunk.buf);
        }
        self.len = 0;
    }

    fn consume(&mut self, mut written: usize, pool: &mut ChunkPool) {
        debug_assert!(written <= self.len, "writer claims more than offered");
        self.len -= written.min(self.len);
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let available = front.end - front.start;
            if written < available {
                front.start += written;
                return;
            }
            written -= available;
            if let Some(done) = self.chunks.pop_front() {
                pool.give_back(done.buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool with a budget nothing in these tests reaches.
    fn pool(max_free: usize) -> ChunkPool {
        ChunkPool::new(
            max_free,
            Arc::new(MemoryBudget::new(usize::MAX)),
            1 << 18,
            8,
        )
    }

    #[test]
    fn lent_chunks_are_charged_to_the_budget_and_a_burst_settles() {
        let budget = Arc::new(MemoryBudget::new(usize::MAX));
        let mut pool = ChunkPool::new(64, Arc::clone(&budget), 1 << 18, 9);
        let mut queue = OutQueue::new();
        queue.push(&vec![7u8; 10 * CHUNK_SIZE], &mut pool);
        assert_eq!(budget.used(), 10 * CHUNK_SIZE);
        assert!(pool.grew());
        assert!(!pool.burst_over());
        queue.clear(&mut pool);
        assert_eq!(budget.used(), 0);
        assert!(pool.burst_over());
        assert_eq!(pool.idle(), 10);
        pool.settle(2);
        assert_eq!(pool.idle(), 2);
        assert!(!pool.grew(), "watching starts again from what is lent");
    }
    use proptest::prelude::*;

    /// A writer that accepts at most `limits[i]` bytes on its i-th call, or
    /// reports WouldBlock for a limit of 0.
    struct Throttled {
        taken: Vec<u8>,
        limits: Vec<usize>,
        calls: usize,
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let limit = self.limits.get(self.calls).copied().unwrap_or(usize::MAX);
            self.calls += 1;
            if limit == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = (limit - n).min(b.len());
                self.taken.extend_from_slice(&b[..take]);
                n += take;
                if n == limit {
                    break;
                }
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A queue that never held a byte is one pointer and owns nothing.
    #[test]
    fn a_queue_is_one_pointer_until_bytes_are_queued() {
        assert_eq!(
            std::mem::size_of::<OutQueue>(),
            std::mem::size_of::<usize>()
        );
        let mut pool = pool(4);
        let mut q = OutQueue::new();
        q.push(b"", &mut pool);
        assert!(q.ring.is_none(), "nothing queued, nothing allocated");
        q.push(b"x", &mut pool);
        q.clear(&mut pool);
        assert!(q.ring.is_some(), "kept once allocated");
        assert!(q.is_empty());
    }

    #[test]
    fn empty_queue_owns_no_chunk_and_writes_nothing() {
        let mut pool = pool(4);
        let mut q = OutQueue::new();
        let mut w = Throttled {
            taken: vec![],
            limits: vec![],
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), (0, true));
        assert_eq!(w.calls, 0);
        assert_eq!(pool.allocated(), 0);
    }

    #[test]
    fn would_block_keeps_everything() {
        let mut pool = pool(4);
        let mut q = OutQueue::new();
        q.push(b"hello", &mut pool);
        let mut w = Throttled {
            taken: vec![],
            limits: vec![0],
            calls: 0,
        };
        assert!(q.write_to(&mut w, &mut pool).is_err());
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn drained_chunks_are_reused_not_reallocated() {
        let mut pool = pool(8);
        let mut q = OutQueue::new();
        let data = vec![7u8; 3 * CHUNK_SIZE];
        for _ in 0..100 {
            q.push(&data, &mut pool);
            let mut w = Throttled {
                taken: vec![],
                limits: vec![],
                calls: 0,
            };
            while !q.is_empty() {
                q.write_to(&mut w, &mut pool).unwrap();
            }
        }
        assert_eq!(pool.allocated(), 3);
    }

    #[test]
    fn pool_frees_chunks_beyond_its_cap() {
        let mut pool = pool(1);
        let mut q = OutQueue::new();
        q.push(&vec![1u8; 4 * CHUNK_SIZE], &mut pool);
        q.clear(&mut pool);
        assert_eq!(pool.idle(), 1);
        assert!(q.is_empty());
    }

    proptest! {
        /// Whatever the pushes and however little each write takes, the
        /// writer sees exactly the pushed bytes in order, and `len` tracks it.
        #[test]
        fn any_pushes_and_partial_writes_preserve_the_stream(
            pushes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40_000), 1..12),
            limits in proptest::collection::vec(0usize..70_000, 0..40),
        ) {
            let mut pool = pool(16);
            let mut q = OutQueue::new();
            let mut w = Throttled { taken: vec![], limits, calls: 0 };
            let mut expected = Vec::new();
            for p in &pushes {
                q.push(p, &mut pool);
                expected.extend_from_slice(p);
                let _ = q.write_to(&mut w, &mut pool);
                prop_assert_eq!(q.len(), expected.len() - w.taken.len());
            }
            while !q.is_empty() {
                let _ = q.write_to(&mut w, &mut pool);
            }
            prop_assert_eq!(w.taken, expected);
        }
    }
}
