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

use super::gso::{self as plan, Plan, MAX_SEGMENT};

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

/// A datagram's source as the reply plan compares it: the first 32 bytes of
/// its sockaddr (an IPv4 one is 16 bytes, an IPv6 one 28) as four words,
/// zero past the address's length. Equal keys are equal addresses, and
/// comparing two is four integer comparisons: comparing the sockaddrs as
/// byte slices called `memcmp` for every pair the plan looks at, a fifth of
/// the worker's instructions with 16 peers in a batch (callgrind).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PeerKey([u64; 4]);

impl PeerKey {
    /// The key of a sockaddr whose first 32 bytes are `raw` and whose
    /// length is `len` (bytes at and past `len` do not count).
    fn new(raw: [u8; 32], len: usize) -> PeerKey {
        let mut words = [0u64; 4];
        for (w, word) in words.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&raw[w * 8..w * 8 + 8]);
            let valid = len.saturating_sub(w * 8).min(8);
            let mask = if valid == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * valid)) - 1
            };
            *word = u64::from_le_bytes(bytes) & mask;
        }
        PeerKey(words)
    }
}

/// What one [`Batch::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    /// Messages (sendmmsg entries) the sent datagrams took: fewer than
    /// `datagrams` when GSO grouped some.
    pub messages: u64,
    pub bytes: u64,
    /// Replies not sent: the socket would block, or that one reply failed.
    pub dropped: u64,
    /// The errno with which the kernel refused a GSO message (its replies
    /// were then sent one per message): use no GSO on this socket again.
    pub gso_refused: Option<i32>,
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

    /// Slot `i`'s source address as the kernel wrote it: equal bytes, same
    /// peer.
    /// Slot `i`'s source as the reply plan compares it (see [`PeerKey`]).
    fn peer_key(&self, i: usize) -> PeerKey {
        let len = (self.name_lens[i] as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: names[i] is plain old data of 128 bytes; the first 32 are read.
        let raw: [u8; 32] = unsafe {
            std::ptr::read_unaligned((&self.names[i] as *const libc::sockaddr_storage).cast())
        };
        PeerKey::new(raw, len)
    }

    /// Sends each slot in `slots` back to where it came from, with as few
    /// `sendmmsg` calls as the socket allows. With `gso`, replies to one peer
    /// of one length (the last may be shorter) leave as one message with a
    /// `UDP_SEGMENT` control message, one iovec per datagram (see
    /// [`super::gso`]); the replies to each peer keep their order. A reply
    /// that would block ends the batch (the rest are dropped, as one reply
    /// would be); a message that fails otherwise (an ICMP error pending for
    /// that peer) is dropped alone. If the kernel refuses a GSO message, its
    /// replies and the rest are sent one per message and
    /// [`Sent::gso_refused`] says why.
    pub fn send(&mut self, fd: RawFd, slots: &[usize], gso: bool) -> Sent {
        let k = slots.len().min(BATCH);
        let mut peers = [(PeerKey::default(), 0); BATCH];
        for (p, &i) in peers.iter_mut().zip(slots) {
            *p = (self.peer_key(i), self.lens[i]);
        }
        let mut plan = Plan::default();
        plan::plan(&peers[..k], if gso { MAX_SEGMENT } else { 0 }, &mut plan);
        // SAFETY: plain old data; all zeroes is a valid empty value.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut cmsgs: [SegmentCmsg; BATCH] = unsafe { zeroed() };
        // The slot of each iovec, and the iovec range of each message.
        let mut slot_of = [0usize; BATCH];
        let mut spans = [(0usize, 0usize); BATCH];
        for (pos, r) in plan.order().enumerate() {
            let i = slots[r];
            slot_of[pos] = i;
            iov[pos].iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            iov[pos].iov_len = self.lens[i];
        }
        let mut msgs = plan.groups();
        for (g, span) in spans.iter_mut().enumerate().take(msgs) {
            let range = plan.group(g);
            *span = (range.start, range.end);
        }
        let mut sent = Sent::default();
        let mut start = 0;
        'build: loop {
            for g in start..msgs {
                let (a, b) = spans[g];
                let i = slot_of[a];
                let h = &mut hdrs[g].msg_hdr;
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.name_lens[i];
                h.msg_iov = &mut iov[a];
                h.msg_iovlen = b - a;
                if b - a > 1 {
                    cmsgs[g].set(self.lens[i] as u16);
                    h.msg_control = (&mut cmsgs[g] as *mut SegmentCmsg).cast();
                    h.msg_controllen = SEGMENT_CMSG_SPACE;
                } else {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
            }
            while start < msgs {
                // SAFETY: headers start..msgs point into buffers owned by
                // `self`, `iov` and `cmsgs`, alive for the call.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        hdrs[start..].as_mut_ptr(),
                        (msgs - start) as libc::c_uint,
                        0,
                    )
                };
                if r > 0 {
                    let r = r as usize;
                    sent.messages += r as u64;
                    for g in start..start + r {
                        sent.datagrams += (spans[g].1 - spans[g].0) as u64;
                        sent.bytes += u64::from(hdrs[g].msg_len);
                    }
                    start += r;
                    continue;
                }
                let err = io::Error::last_os_error();
                let (a, b) = spans[start];
                match err.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => {
                        sent.dropped += (spans[msgs - 1].1 - a) as u64;
                        break;
                    }
                    _ if b - a > 1 && is_gso_refusal(&err) => {
                        // One message per remaining reply, from this one on.
                        sent.gso_refused = err.raw_os_error();
                        let end = spans[msgs - 1].1;
                        for (g, pos) in (a..end).enumerate() {
                            spans[g] = (pos, pos + 1);
                        }
                        msgs = end - a;
                        start = 0;
                        continue 'build;
                    }
                    _ => {
                        sent.dropped += (b - a) as u64;
                        start += 1;
                    }
                }
            }
            break;
        }
        sent
    }
}

/// Room for one `UDP_SEGMENT` control message (a `u16` segment size),
/// aligned as a `cmsghdr`.
#[repr(C, align(8))]
struct SegmentCmsg([u8; SEGMENT_CMSG_SPACE]);

/// `CMSG_SPACE(sizeof(u16))`.
// SAFETY: CMSG_SPACE is arithmetic on its argument.
const SEGMENT_CMSG_SPACE: usize = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;

impl SegmentCmsg {
    /// Writes the control message that cuts a send into `segment`-byte
    /// datagrams.
    fn set(&mut self, segment: u16) {
        let hdr = libc::cmsghdr {
            // SAFETY: CMSG_LEN is arithmetic on its argument.
            cmsg_len: unsafe { libc::CMSG_LEN(size_of::<u16>() as u32) } as _,
            cmsg_level: libc::SOL_UDP,
            cmsg_type: libc::UDP_SEGMENT,
        };
        let at = self.0.as_mut_ptr();
        // SAFETY: the buffer is CMSG_SPACE(2) bytes aligned for a cmsghdr:
        // the header, then (at CMSG_LEN(0)) the two data bytes, fit.
        unsafe {
            std::ptr::write(at.cast::<libc::cmsghdr>(), hdr);
            let data = at.add(libc::CMSG_LEN(0) as usize);
            std::ptr::write_unaligned(data.cast::<u16>(), segment);
        }
    }
}

/// Whether a GSO message's error means the kernel or the route will not
/// segment (no checksum offload, an IPsec route, a segment above the path
/// MTU, a kernel without `UDP_SEGMENT`), rather than a failure of that peer.
fn is_gso_refusal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// Whether the kernel knows `UDP_SEGMENT` on `fd` (Linux 4.18 on). An older
/// kernel would ignore the control message and send the replies as one
/// datagram, so GSO is used only where this says yes.
pub fn gso_supported(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and sized as the call expects.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Bytes past an address's length never make two keys differ, and
    /// every byte within it does (the last word of an IPv6 sockaddr is half
    /// address, half stale).
    #[test]
    fn a_peer_key_counts_exactly_the_address_bytes() {
        for len in [16usize, 28] {
            let base: [u8; 32] = std::array::from_fn(|b| b as u8);
            let mut stale = base;
            for b in &mut stale[len..] {
                *b ^= 0xff;
            }
            assert_eq!(PeerKey::new(base, len), PeerKey::new(stale, len));
            for b in 0..len {
                let mut other = base;
                other[b] ^= 1;
                assert_ne!(
                    PeerKey::new(base, len),
                    PeerKey::new(other, len),
                    "byte {b}"
                );
            }
        }
    }

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
        let sent = batch.send(server.as_raw_fd(), &[0, 2], true);
        assert_eq!(
            sent,
            Sent {
                datagrams: 2,
                messages: 2,
                bytes: 60_003,
                dropped: 0,
                gso_refused: None,
            }
        );
        let mut buf = vec![0u8; 65_536];
        assert_eq!(client.recv(&mut buf).unwrap(), 3);
        assert_eq!(client.recv(&mut buf).unwrap(), 60_000);
    }

    #[test]
    fn replies_to_one_peer_share_a_gso_message_and_arrive_separate() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        if !gso_supported(server.as_raw_fd()) {
            eprintln!("SKIPPED: no UDP_SEGMENT in this kernel");
            return;
        }
        let to = server.local_addr().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
        }
        // a: 3 x 64 and a shorter 10 (one message); b: 64, 64 (one);
        // a again: 64 after the shorter one (a message of its own).
        let sends: [(&std::net::UdpSocket, u8, usize); 7] = [
            (&a, 1, 64),
            (&b, 2, 64),
            (&a, 3, 64),
            (&a, 4, 64),
            (&b, 5, 64),
            (&a, 6, 10),
            (&a, 7, 64),
        ];
        for (s, tag, len) in sends {
            s.send_to(&vec![tag; len], to).unwrap();
        }
        let mut batch = Batch::default();
        let n = batch.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 7);
        let sent = batch.send(server.as_raw_fd(), &[0, 1, 2, 3, 4, 5, 6], true);
        assert_eq!(sent.gso_refused, None);
        assert_eq!((sent.datagrams, sent.messages, sent.dropped), (7, 3, 0));
        assert_eq!(sent.bytes, 6 * 64 + 10);
        let mut buf = [0u8; 1024];
        for (s, tag, len) in sends {
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &vec![tag; len][..], "datagram {tag}");
        }
    }

    #[test]
    fn without_gso_every_reply_is_a_message() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let sent = echo_tagged(&server, 4, 32, false);
        assert_eq!((sent.datagrams, sent.messages), (4, 4));
    }

    #[test]
    fn a_refused_gso_message_goes_out_one_datagram_each() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        if !gso_supported(server.as_raw_fd()) {
            eprintln!("SKIPPED: no UDP_SEGMENT in this kernel");
            return;
        }
        // Without checksums the kernel refuses GSO (EINVAL).
        let one: libc::c_int = 1;
        // SAFETY: a live socket and an int option value.
        let r = unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let sent = echo_tagged(&server, 5, 48, true);
        assert_eq!(sent.gso_refused, Some(libc::EINVAL));
        assert_eq!((sent.datagrams, sent.messages, sent.dropped), (5, 5, 0));
    }

    /// From a fresh client, `count` datagrams of `len` bytes, each filled
    /// with its index, to `server`; read as one batch and answered (with
    /// `gso` as given); every reply checked whole and in order.
    fn echo_tagged(server: &std::net::UdpSocket, count: u8, len: usize, gso: bool) -> Sent {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for tag in 0..count {
            client
                .send_to(&vec![tag; len], server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = Batch::default();
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), usize::from(count));
        let slots: Vec<usize> = (0..usize::from(count)).collect();
        let sent = batch.send(server.as_raw_fd(), &slots, gso);
        let mut buf = vec![0u8; len + 1];
        for tag in 0..count {
            assert_eq!(client.recv(&mut buf).unwrap(), len);
            assert_eq!(buf[..len], vec![tag; len][..], "reply {tag}");
        }
        sent
    }
}
