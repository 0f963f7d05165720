//! The per-connection outbound queue: what the socket did not take yet.
//!
//! Bytes are copied into fixed-size chunks borrowed from a per-loop
//! [`ChunkPool`], so steady state allocates nothing: a chunk drained by a write
//! goes back to the pool and the next connection that queues reuses it. An
//! empty queue owns no chunk, so an idle connection costs only the
//! `VecDeque` header. Draining uses one vectored write over up to
//! [`MAX_IOVECS`] chunks. The queue is pure: it never touches a socket itself,
//! only a `Write` it is handed.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Bytes per pooled chunk: large enough that one `writev` of [`MAX_IOVECS`]
/// chunks moves 1 MiB, small enough that a slow reader pins little beyond
/// its limit and a small remainder wastes little.
pub const CHUNK_SIZE: usize = 16 * 1024;

/// Chunks offered to one `writev`: 64 x 16 KiB = 1 MiB, the default queue limit.
/// (Linux accepts up to 1024; more would only lengthen the stack array.)
pub const MAX_IOVECS: usize = 64;

/// Free chunks shared by every connection of one loop (one thread, no locks).
///
/// Invariant: holds at most `max_free` chunks; extra chunks are freed, so a
/// burst of slow readers does not pin its peak memory forever.
#[derive(Debug)]
pub struct ChunkPool {
    free: Vec<Box<[u8]>>,
    max_free: usize,
    /// Chunks ever allocated (tests check that a steady state keeps it flat).
    #[cfg(test)]
    allocated: u64,
}

impl ChunkPool {
    /// A pool that keeps up to `max_free` idle chunks for reuse.
    pub fn new(max_free: usize) -> Self {
        ChunkPool {
            free: Vec::new(),
            max_free,
            #[cfg(test)]
            allocated: 0,
        }
    }

    fn take(&mut self) -> Box<[u8]> {
        self.free.pop().unwrap_or_else(|| {
            #[cfg(test)]
            {
                self.allocated += 1;
            }
            vec![0u8; CHUNK_SIZE].into_boxed_slice()
        })
    }

    fn give_back(&mut self, chunk: Box<[u8]>) {
        if self.free.len() < self.max_free {
            self.free.push(chunk);
        }
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

/// Bytes owed to one peer, in order.
///
/// The ring of chunk handles keeps its capacity once grown (at most about
/// `(queue limit + one read) / CHUNK_SIZE` entries of 24 bytes), so a
/// connection that fills and drains its queue again and again does not
/// allocate each time.
///
/// Invariant: `len` equals the sum of `end - start` over the chunks, and no
/// chunk in the queue is empty.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl OutQueue {
    /// An empty queue; allocates nothing.
    pub const fn new() -> Self {
        OutQueue {
            chunks: VecDeque::new(),
            len: 0,
        }
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, filling the last chunk before taking new ones.
    pub fn push(&mut self, mut data: &[u8], pool: &mut ChunkPool) {
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

    /// One write (vectored over up to [`MAX_IOVECS`] chunks) of the queued
    /// bytes. Returns what `out` took and whether it took all it was offered
    /// (when not, the socket buffer is full). Written chunks go back to `pool`.
    pub fn write_to<W: Write + ?Sized>(
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

    /// Drops everything queued (the peer is gone), returning chunks to `pool`.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
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

    #[test]
    fn empty_queue_owns_no_chunk_and_writes_nothing() {
        let mut pool = ChunkPool::new(4);
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
        let mut pool = ChunkPool::new(4);
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
        let mut pool = ChunkPool::new(8);
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
        let mut pool = ChunkPool::new(1);
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
            let mut pool = ChunkPool::new(16);
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
