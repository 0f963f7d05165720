//! Which replies of a batch can leave together as one UDP GSO send.
//!
//! With generic segmentation offload (`UDP_SEGMENT`, Linux 4.18) one
//! `sendmsg` carries several datagrams to one destination: the payload is cut
//! into segments of `gso_size` bytes, the last one may be shorter. The kernel
//! then routes, builds headers and queues once per send instead of once per
//! datagram, which is most of what a small reply costs the sender.
//!
//! [`plan`] is the pure part: given the replies of a batch as (destination,
//! length) in arrival order, it orders them stably by destination (the order
//! of the replies to one peer never changes; only replies to different peers
//! move past each other) and cuts each destination's run into groups the
//! kernel accepts. No I/O, no allocation.

/// Most segments one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes one GSO send may carry: the largest UDP payload over
/// IPv4 (65,535 minus the IPv4 and UDP headers); IPv6 allows 20 more, and the
/// smaller bound is used for both.
pub const MAX_PAYLOAD: usize = 65_507;

/// Largest segment grouped: a segment plus its IPv6 and UDP headers fits a
/// 1,500-byte MTU (1,500 - 40 - 8). The kernel refuses a GSO send whose
/// segment would not fit the route's MTU, and larger datagrams gain little
/// from GSO (the per-datagram cost is small beside their copy), so they go
/// one per message.
pub const MAX_SEGMENT: usize = 1_452;

/// Most replies one plan covers.
pub const MAX_REPLIES: usize = 64;

/// The replies of one batch in sending order, cut into groups.
///
/// Invariants after [`plan`]: `order[..len]` is a permutation of `0..len`;
/// `ends[..groups]` is strictly increasing and ends at `len`; group `g` is
/// `order[ends[g - 1]..ends[g]]` (from 0 for the first) and holds replies to
/// one destination, in their original order, all of one length but the last,
/// which may be shorter; no group holds more than [`MAX_SEGMENTS`] replies or
/// [`MAX_PAYLOAD`] bytes, or a reply of 0 bytes or longer than the segment
/// limit alongside another.
#[derive(Debug, Clone)]
pub struct Plan {
    order: [u8; MAX_REPLIES],
    ends: [u8; MAX_REPLIES],
    len: usize,
    groups: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            order: [0; MAX_REPLIES],
            ends: [0; MAX_REPLIES],
            len: 0,
            groups: 0,
        }
    }
}

impl Plan {
    /// Reply indices (into the list given to [`plan`]) in sending order.
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order[..self.len].iter().map(|&i| usize::from(i))
    }

    /// How many groups (messages) the replies make.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Group `g`'s range of positions in [`Plan::order`].
    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        debug_assert!(g < self.groups);
        let start = if g == 0 {
            0
        } else {
            usize::from(self.ends[g - 1])
        };
        start..usize::from(self.ends[g])
    }
}

/// The group being filled.
#[derive(Debug, Clone, Copy)]
struct Open {
    segment: usize,
    count: usize,
    bytes: usize,
    /// A shorter segment ended the group: nothing may follow it.
    closed: bool,
}

impl Open {
    fn new(len: usize) -> Self {
        Open {
            segment: len,
            count: 1,
            bytes: len,
            closed: false,
        }
    }

    /// Whether a reply of `len` bytes may join. An empty datagram cannot
    /// be a segment, and a group's segment must be within `max_segment`.
    fn takes(&self, len: usize, max_segment: usize) -> bool {
        !self.closed
            && self.segment > 0
            && self.segment <= max_segment
            && len > 0
            && len <= self.segment
            && self.count < MAX_SEGMENTS
            && self.bytes + len <= MAX_PAYLOAD
    }

    fn push(&mut self, len: usize) {
        self.count += 1;
        self.bytes += len;
        self.closed = len < self.segment;
    }
}

/// Plans `replies` (destination, length; at most [`MAX_REPLIES`], the rest
/// ignored) into `out`: replies to one destination, in their order, grouped
/// while their lengths allow (see [`Plan`]); `max_segment` caps the segment
/// size (0: every reply alone, as without GSO).
pub fn plan<P: PartialEq>(replies: &[(P, usize)], max_segment: usize, out: &mut Plan) {
    let n = replies.len().min(MAX_REPLIES);
    let mut taken = [false; MAX_REPLIES];
    out.len = 0;
    out.groups = 0;
    for first in 0..n {
        if taken[first] {
            continue;
        }
        let peer = &replies[first].0;
        let mut open: Option<Open> = None;
        for (i, (p, len)) in replies.iter().enumerate().take(n).skip(first) {
            if taken[i] || p != peer {
                continue;
            }
            taken[i] = true;
            match open.as_mut() {
                Some(g) if g.takes(*len, max_segment) => g.push(*len),
                Some(_) => {
                    out.ends[out.groups] = out.len as u8;
                    out.groups += 1;
                    open = Some(Open::new(*len));
                }
                None => open = Some(Open::new(*len)),
            }
            out.order[out.len] = i as u8;
            out.len += 1;
        }
        if open.is_some() {
            out.ends[out.groups] = out.len as u8;
            out.groups += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan as groups of reply indices.
    fn groups<P: PartialEq>(replies: &[(P, usize)], max_segment: usize) -> Vec<Vec<usize>> {
        let mut p = Plan::default();
        plan(replies, max_segment, &mut p);
        let order: Vec<usize> = p.order().collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..replies.len()).collect::<Vec<_>>(),
            "a permutation"
        );
        (0..p.groups())
            .map(|g| order[p.group(g)].to_vec())
            .collect()
    }

    #[test]
    fn replies_to_one_peer_of_one_length_make_one_group() {
        assert_eq!(
            groups(&[('a', 64); 8], MAX_SEGMENT),
            vec![(0..8).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn peers_are_grouped_stably_and_keep_their_order() {
        let r = [
            ('a', 64),
            ('b', 64),
            ('a', 64),
            ('c', 10),
            ('b', 64),
            ('a', 64),
        ];
        assert_eq!(
            groups(&r, MAX_SEGMENT),
            vec![vec![0, 2, 5], vec![1, 4], vec![3]]
        );
    }

    #[test]
    fn a_shorter_reply_ends_its_group_and_a_longer_one_starts_another() {
        let r = [
            ('a', 64),
            ('a', 64),
            ('a', 30),
            ('a', 64),
            ('a', 100),
            ('a', 100),
        ];
        assert_eq!(
            groups(&r, MAX_SEGMENT),
            vec![vec![0, 1, 2], vec![3], vec![4, 5]]
        );
    }

    #[test]
    fn empty_and_oversized_replies_go_alone() {
        let r = [
            ('a', 0),
            ('a', 0),
            ('a', 2000),
            ('a', 2000),
            ('a', 5),
            ('a', 0),
        ];
        assert_eq!(
            groups(&r, MAX_SEGMENT),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4], vec![5]]
        );
    }

    #[test]
    fn without_gso_every_reply_goes_alone() {
        let r = [('a', 64), ('a', 64), ('b', 64)];
        assert_eq!(groups(&r, 0), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn groups_respect_the_segment_count_and_payload_limits() {
        let many = [('a', 1); MAX_REPLIES];
        let g = groups(&many, MAX_SEGMENT);
        assert_eq!(g.len(), 1, "64 segments fit");
        // 1,452 x 45 = 65,340 fits; a 46th would pass 65,507.
        let big = [('a', MAX_SEGMENT); 50];
        let g = groups(&big, MAX_SEGMENT);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![45, 5]);
        let mut plan_ = Plan::default();
        let mixed: Vec<(u32, usize)> = (0..64u32)
            .map(|i| (i % 3, 1 + (i as usize % 5) * 300))
            .collect();
        plan(&mixed, MAX_SEGMENT, &mut plan_);
        let order: Vec<usize> = plan_.order().collect();
        for g in 0..plan_.groups() {
            let members = &order[plan_.group(g)];
            let lens: Vec<usize> = members.iter().map(|&i| mixed[i].1).collect();
            assert!(lens.len() <= MAX_SEGMENTS);
            assert!(lens.iter().sum::<usize>() <= MAX_PAYLOAD);
            assert!(members.windows(2).all(|w| w[0] < w[1]), "order kept");
            assert!(members.iter().all(|&i| mixed[i].0 == mixed[members[0]].0));
            let (last, body) = lens.split_last().expect("non-empty group");
            assert!(body.iter().all(|&l| l == lens[0]) && *last <= lens[0]);
        }
    }

    #[test]
    fn more_replies_than_a_plan_holds_are_ignored() {
        let r = [('a', 8); MAX_REPLIES + 3];
        let mut p = Plan::default();
        plan(&r, MAX_SEGMENT, &mut p);
        assert_eq!(p.order().count(), MAX_REPLIES);
    }
}
