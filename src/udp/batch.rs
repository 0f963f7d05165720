//! A burst of datagrams in one system call each way: `recvmmsg(2)` reads up
//! to [`BATCH`] datagrams with their sources, `sendmmsg(2)` sends the replies
//! from the same buffers. The naive loop every tutorial writes makes two
//! calls per datagram (`recvfrom`, `sendto`); DNS servers and QUIC stacks
//! (quinn) batch the same way.
//!
//! The buffers are allocated once per worker that serves UDP, and every slot
//! holds the largest datagram whole, so nothing is ever truncated and no
//! datagram allocates.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams read (and answered) per system call. Measured with 16 sockets
/// x 8 datagrams in flight (docs/BENCHMARKS.md): a socket rarely holds more
/// than its client keeps in flight, so larger batches only come back short.
pub const BATCH: usize = 16;

/// Bytes per slot: any UDP payload (65,507 over IPv4, 65,527 over IPv6)
/// fits whole. Pages a small datagram never touches are never resident.
const SLOT: usize = 64 * 1024;

/// Received datagrams and where they came from, slot by slot.
pub struct Batch {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    name_lens: [libc::socklen_t; BATCH],
    lens: [usize; BATCH],
    /// Slots filled by the last [`Batch::recv`].
    filled: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("filled", &self.filled)
            .finish()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
            names: Box::new(unsafe { zeroed() }),
            name_lens: [0; BATCH],
            lens: [0; BATCH],
            filled: 0,
        }
    }
}

/// What one [`Batch::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    /// Replies not sent: the socket would block, or that one reply failed.
    pub dropped: u64,
}

impl Batch {
    /// Reads up to [`BATCH`] datagrams from `fd` (non-blocking) with one
    /// `recvmmsg`. Returns how many; `WouldBlock` when none was waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: plain old data; all zeroes is a valid empty header.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (v, h)) in iov.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            v.iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            v.iov_len = SLOT;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers owned by `self` (and
        // `iov`, alive for the call), each with its true length.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.name_lens[i] = h.msg_hdr.msg_namelen;
        }
        self.filled = n;
        Ok(n)
    }

    /// Slot `i`'s datagram and its source (`None` for a source that is not
    /// an inet address, which a UDP socket does not produce).
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        debug_assert!(i < self.filled);
        let len = self.name_lens[i].min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
        // SAFETY: the kernel wrote a sockaddr of `len` bytes into names[i].
        let addr = unsafe { socket2::SockAddr::new(self.names[i], len) };
        (
            &self.bufs[i * SLOT..i * SLOT + self.lens[i]],
            addr.as_socket(),
        )
    }

    /// Slot `i`'s datagram, to rewrite in place before it is sent back.
    pub fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        debug_assert!(i < self.filled);
        &mut self.bufs[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// Sends each slot in `slots` back to where it came from, with as few
    /// `sendmmsg` calls as the socket allows. A reply that would block ends
    /// the batch (the rest are dropped, as one reply would be); one that fails
    /// otherwise (an ICMP error pending for that peer) is dropped alone.
    pub fn send(&mut self, fd: RawFd, slots: &[usize]) -> Sent {
        let k = slots.len().min(BATCH);
        // SAFETY: plain old data; all zeroes is a valid empty header.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (j, &i) in slots.iter().take(k).enumerate() {
            iov[j].iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            iov[j].iov_len = self.lens[i];
            hdrs[j].msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[j].msg_hdr.msg_namelen = self.name_lens[i];
            hdrs[j].msg_hdr.msg_iov = &mut iov[j];
            hdrs[j].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = Sent::default();
        let mut start = 0;
        while start < k {
            // SAFETY: headers start..k point into buffers owned by `self`
            // and `iov`, alive for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[start..].as_mut_ptr(),
                    (k - start) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                let r = r as usize;
                sent.datagrams += r as u64;
                sent.bytes += hdrs[start..start + r]
                    .iter()
                    .map(|h| u64::from(h.msg_len))
                    .sum::<u64>();
                start += r;
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    sent.dropped += (k - start) as u64;
                    break;
                }
                _ => {
                    sent.dropped += 1;
                    start += 1;
                }
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_burst_comes_back_in_one_call_each_way() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut batch = Batch::default();
        assert_eq!(
            batch.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let big = vec![7u8; 60_000];
        for msg in [&b"one"[..], b"two", &big] {
            client.send_to(msg, server.local_addr().unwrap()).unwrap();
        }
        let n = batch.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 3);
        let (first, from) = batch.datagram(0);
        assert_eq!(
            (first, from),
            (&b"one"[..], Some(client.local_addr().unwrap()))
        );
        assert_eq!(batch.datagram(2).0.len(), 60_000, "a large datagram whole");
        let sent = batch.send(server.as_raw_fd(), &[0, 2]);
        assert_eq!(
            sent,
            Sent {
                datagrams: 2,
                bytes: 60_003,
                dropped: 0
            }
        );
        let mut buf = vec![0u8; 65_536];
        assert_eq!(client.recv(&mut buf).unwrap(), 3);
        assert_eq!(client.recv(&mut buf).unwrap(), 60_000);
    }
}
