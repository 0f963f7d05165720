//! The metrics port's request reader: an HTTP/1.x request head (request
//! line, headers, blank line) to a [`Head`], bounded by [`MAX_HEAD`] bytes.
//! Sans-I/O: it is given the bytes received so far and never touches a
//! socket or a clock, so it can be fuzzed (`fuzz/fuzz_targets/http.rs`) and
//! property-tested.
//!
//! It reads only the first [`MAX_HEAD`] bytes and judges a line only once
//! it is complete, so the first answer that is not [`Parse::Incomplete`] is
//! the same however the bytes arrived (one read or one byte at a time): a
//! longer input never changes an answer a shorter one gave.

/// The most bytes a request head may take, blank line included. A scrape's
/// head is a few hundred bytes; nginx's default header buffer is 8 KiB too.
pub const MAX_HEAD: usize = 8 * 1024;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<'a> {
    /// A well-formed head so far, not yet ended by its blank line: read more.
    Incomplete,
    /// A complete, well-formed head.
    Complete(Head<'a>),
    /// Not a request this reader serves: answer 400 and close.
    Error(HeadError),
}

/// A complete request head: the parts the metrics port routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a [u8],
    /// The request target as sent, e.g. `/metrics?x=1`.
    pub target: &'a [u8],
    /// Bytes of the head, blank line included (what follows is a body or
    /// another request, neither of which the metrics port reads).
    pub len: usize,
}

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The request line is not `METHOD SP TARGET SP HTTP/1.x`.
    RequestLine,
    /// A header line is not `name: value`.
    Header,
    /// No blank line within [`MAX_HEAD`] bytes.
    TooLarge,
}

/// Reads a request head from the start of `input`, the bytes received so
/// far. Lines end in LF, optionally preceded by CR (RFC 9112 §2.2 allows a
/// server to accept a bare LF).
pub fn parse(input: &[u8]) -> Parse<'_> {
    let window = &input[..input.len().min(MAX_HEAD)];
    let mut rest = window;
    let mut request = None;
    let mut offset = 0;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        offset += end + 1;
        match request {
            None => match request_line(line) {
                Some(parts) => request = Some(parts),
                None => return Parse::Error(HeadError::RequestLine),
            },
            Some((method, target)) if line.is_empty() => {
                return Parse::Complete(Head {
                    method,
                    target,
                    len: offset,
                })
            }
            Some(_) => {
                if !header_line(line) {
                    return Parse::Error(HeadError::Header);
                }
            }
        }
    }
    if window.len() == MAX_HEAD {
        Parse::Error(HeadError::TooLarge)
    } else {
        Parse::Incomplete
    }
}

/// `METHOD SP TARGET SP HTTP/1.x`: the method and the target.
fn request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().filter(|m| is_token(m))?;
    let target = parts
        .next()
        .filter(|t| !t.is_empty() && t.iter().all(|b| b.is_ascii_graphic()))?;
    let version = parts.next()?;
    if parts.next().is_some() || !matches!(version, b"HTTP/1.0" | b"HTTP/1.1") {
        return None;
    }
    Some((method, target))
}

/// `name: value`, the name a token, the value without control bytes other
/// than HTAB (obs-text, bytes 0x80 and up, is allowed as RFC 9110 §5.5 says).
fn header_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    is_token(name) && value.iter().all(|&b| b == b'\t' || !b.is_ascii_control())
}

/// RFC 9110 §5.6.2 `token`: one or more tchar.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What the metrics port answers to a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// Another path: 404.
    NotFound,
    /// Another method on `/metrics`: 405.
    MethodNotAllowed,
}

/// Routes a complete head: the path decides first (a path that does not
/// exist is 404 whatever the method), then the method.
pub fn route(head: &Head<'_>) -> Route {
    let path = head.target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        Route::NotFound
    } else if head.method != b"GET" {
        Route::MethodNotAllowed
    } else {
        Route::Metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head<'a>(method: &'a [u8], target: &'a [u8], len: usize) -> Parse<'a> {
        Parse::Complete(Head {
            method,
            target,
            len,
        })
    }

    #[test]
    fn table() {
        let scrape = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n";
        let cases: &[(&[u8], Parse<'_>)] = &[
            (b"", Parse::Incomplete),
            (b"GET /metrics HTTP/1.1\r\n", Parse::Incomplete),
            (
                b"GET /metrics HTTP/1.1\r\n\r\n",
                head(b"GET", b"/metrics", 25),
            ),
            (
                b"GET /metrics HTTP/1.0\n\nrest",
                head(b"GET", b"/metrics", 23),
            ),
            (scrape, head(b"GET", b"/metrics", scrape.len())),
            (b"POST /x HTTP/1.1\r\nA:\r\n\r\n", head(b"POST", b"/x", 24)),
            (b"\r\n", Parse::Error(HeadError::RequestLine)),
            (b"GET /metrics\r\n", Parse::Error(HeadError::RequestLine)),
            (
                b"GET  /metrics HTTP/1.1\r\n",
                Parse::Error(HeadError::RequestLine),
            ),
            (
                b"GET /metrics HTTP/2.0\r\n",
                Parse::Error(HeadError::RequestLine),
            ),
            (
                b"GET /m\x01 HTTP/1.1\r\n",
                Parse::Error(HeadError::RequestLine),
            ),
            (b"G(T / HTTP/1.1\r\n", Parse::Error(HeadError::RequestLine)),
            (
                b"GET / HTTP/1.1\r\nno colon\r\n",
                Parse::Error(HeadError::Header),
            ),
            (
                b"GET / HTTP/1.1\r\n: v\r\n",
                Parse::Error(HeadError::Header),
            ),
            (
                b"GET / HTTP/1.1\r\nA: \x00\r\n",
                Parse::Error(HeadError::Header),
            ),
            (
                b"GET / HTTP/1.1\r\nA: \x7f\r\n",
                Parse::Error(HeadError::Header),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_head_without_end_is_refused_at_the_cap_not_before() {
        let mut input = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while input.len() < MAX_HEAD - 1 {
            input.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        input.truncate(MAX_HEAD - 1);
        assert_eq!(parse(&input), Parse::Incomplete);
        input.push(b'a');
        assert_eq!(parse(&input), Parse::Error(HeadError::TooLarge));
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&input), Parse::Error(HeadError::TooLarge));
    }

    #[test]
    fn routes() {
        let r = |m: &[u8], t: &[u8]| {
            route(&Head {
                method: m,
                target: t,
                len: 0,
            })
        };
        assert_eq!(r(b"GET", b"/metrics"), Route::Metrics);
        assert_eq!(r(b"GET", b"/metrics?name[]=x"), Route::Metrics);
        assert_eq!(r(b"POST", b"/metrics"), Route::MethodNotAllowed);
        assert_eq!(r(b"HEAD", b"/metrics"), Route::MethodNotAllowed);
        assert_eq!(r(b"get", b"/metrics"), Route::MethodNotAllowed);
        assert_eq!(r(b"GET", b"/"), Route::NotFound);
        assert_eq!(r(b"GET", b"/metrics/"), Route::NotFound);
        assert_eq!(r(b"POST", b"/other"), Route::NotFound);
    }

    /// Inputs near the grammar: pieces of requests, shuffled and repeated.
    fn near_http() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"GET".to_vec()),
            Just(b"POST".to_vec()),
            Just(b" ".to_vec()),
            Just(b"/metrics".to_vec()),
            Just(b"HTTP/1.1".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"Host: x".to_vec()),
            Just(b":".to_vec()),
            Just(b"GET /metrics HTTP/1.1\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::collection::vec(Just(b'a'), 0..3000),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    /// Feeds `input` in pieces ending at `ends` (any order, any size), as
    /// the metrics thread does (it re-reads what it has after each read);
    /// returns the first answer that is not `Incomplete`. Answers borrow
    /// from `input`, so those of different prefixes compare directly.
    fn fed<'a>(input: &'a [u8], ends: &[usize]) -> Parse<'a> {
        let mut ends: Vec<usize> = ends.iter().map(|c| c % (input.len() + 1)).collect();
        ends.push(input.len());
        ends.sort_unstable();
        ends.into_iter()
            .map(|end| parse(&input[..end]))
            .find(|p| *p != Parse::Incomplete)
            .unwrap_or(Parse::Incomplete)
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_answer(
            input in prop_oneof![near_http(), proptest::collection::vec(any::<u8>(), 0..10_000)],
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = parse(&input);
            prop_assert_eq!(whole, fed(&input, &cuts));
            if input.len() <= 2048 {
                let every: Vec<usize> = (0..input.len()).collect();
                prop_assert_eq!(whole, fed(&input, &every));
            }
            if let Parse::Complete(h) = whole {
                prop_assert!(h.len <= MAX_HEAD && h.len <= input.len());
                prop_assert!(input[..h.len].ends_with(b"\n"));
            }
        }
    }
}
