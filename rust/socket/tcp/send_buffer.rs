//! The send buffer: what the user queued and the peer has not acknowledged.
//!
//! Written bytes are copied into a ring. An immutable object handed over
//! whole ([`SharedText`]: a Python `bytes`) is held by reference instead,
//! until acknowledged: its bytes are then copied once, by the kernel into
//! the frame, as a kernel sender copies once into its skb. Besides the copy
//! saved, the kernel reads the caller's (usually cache-warm) object rather
//! than a ring that cycles through megabytes.
//!
//! The stream is the ring's bytes, then the pieces in order. While pieces
//! are queued, written bytes go into a piece of their own (after them), so
//! the ring only ever holds the stream's first bytes. A segment's text is
//! handed on as at most two slices ([`SendBuffer::peek`]); the sender cuts
//! its segments where two slices end ([`SendBuffer::reach`]).

use super::ring::Ring;
use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes that do not change while anyone holds the object.
pub trait SharedText: Send + Sync {
    fn bytes(&self) -> &[u8];
}

/// A shared run shorter than this is copied: the cost of a piece (and of a
/// segment cut at its end) outweighs a small copy.
pub const SHARE_MIN: usize = 16 << 10;

/// Storage of one piece.
enum Held {
    Copied(Vec<u8>),
    Shared(Arc<dyn SharedText>),
}

/// `held[start..end]` is part of the stream.
struct Piece {
    held: Held,
    start: usize,
    end: usize,
}

impl Piece {
    fn text(&self) -> &[u8] {
        match &self.held {
            Held::Copied(v) => &v[self.start..self.end],
            Held::Shared(s) => &s.bytes()[self.start..self.end],
        }
    }
    fn held_bytes(&self) -> usize {
        match &self.held {
            Held::Copied(v) => v.capacity(),
            Held::Shared(_) => self.end - self.start,
        }
    }
}

#[derive(Default)]
pub struct SendBuffer {
    ring: Ring,
    pieces: VecDeque<Piece>,
    pieces_len: usize,
}

impl std::fmt::Debug for SendBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBuffer")
            .field("ring", &self.ring.len())
            .field("pieces", &self.pieces.len())
            .field("pieces_len", &self.pieces_len)
            .finish()
    }
}

impl SendBuffer {
    pub fn len(&self) -> usize {
        self.ring.len() + self.pieces_len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held (for memory accounting): the ring's allocation, and every
    /// piece, a shared one included (it is kept alive for us).
    pub fn allocated(&self) -> usize {
        self.ring.allocated() + self.pieces.iter().map(Piece::held_bytes).sum::<usize>()
    }
    /// Frees the ring's storage if nothing is held.
    pub fn release_if_empty(&mut self) {
        self.ring.release_if_empty();
    }

    /// Copies as much of `data` as fits within `limit` bytes; returns how much.
    pub fn push(&mut self, data: &[u8], limit: usize) -> usize {
        if self.pieces.is_empty() {
            return self.ring.push(data, limit);
        }
        let n = data.len().min(limit.saturating_sub(self.len()));
        if n == 0 {
            return 0;
        }
        match self.pieces.back_mut() {
            Some(Piece {
                held: Held::Copied(v),
                end,
                ..
            }) => {
                v.extend_from_slice(&data[..n]);
                *end += n;
            }
            _ => self.pieces.push_back(Piece {
                held: Held::Copied(data[..n].to_vec()),
                start: 0,
                end: n,
            }),
        }
        self.pieces_len += n;
        n
    }

    /// Queues `text.bytes()[from..to]`, as much as fits within `limit`, by
    /// reference (a short run is copied); returns how much.
    pub fn push_shared(
        &mut self,
        text: &Arc<dyn SharedText>,
        from: usize,
        to: usize,
        limit: usize,
    ) -> usize {
        let n = (to - from).min(limit.saturating_sub(self.len()));
        if n < SHARE_MIN {
            return self.push(&text.bytes()[from..from + n], limit);
        }
        self.pieces.push_back(Piece {
            held: Held::Shared(text.clone()),
            start: from,
            end: from + n,
        });
        self.pieces_len += n;
        n
    }

    /// The slices of the stream from `offset` on, in order.
    fn slices_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> {
        let (a, b) = self.ring.peek(offset, usize::MAX);
        let mut skip = offset.saturating_sub(self.ring.len());
        let pieces = self.pieces.iter().filter_map(move |p| {
            let t = p.text();
            let taken = skip.min(t.len());
            skip -= taken;
            Some(&t[taken..]).filter(|s| !s.is_empty())
        });
        [a, b].into_iter().filter(|s| !s.is_empty()).chain(pieces)
    }

    /// How many bytes from `offset` one segment may carry: what two slices
    /// hold (see [`SendBuffer::peek`]).
    pub fn reach(&self, offset: usize) -> usize {
        if self.pieces.is_empty() {
            return self.ring.len().saturating_sub(offset); // (all copied: the usual case)
        }
        self.slices_from(offset).take(2).map(<[u8]>::len).sum()
    }

    /// How many of the stream's last bytes two slices hold: the most a
    /// segment ending at the end may carry.
    pub fn tail_reach(&self) -> usize {
        let mut lens: Vec<usize> = self.slices_from(0).map(<[u8]>::len).collect();
        lens.reverse();
        lens.into_iter().take(2).sum()
    }

    /// Up to `len` bytes at `offset`, as at most two slices; fewer if the
    /// text spans more (the sender keeps within [`SendBuffer::reach`]).
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if self.pieces.is_empty() {
            return self.ring.peek(offset, len);
        }
        let mut slices = self.slices_from(offset);
        let a = slices.next().unwrap_or(&[]);
        let a = &a[..a.len().min(len)];
        let left = len - a.len();
        let b = if left > 0 {
            slices.next().map_or(&[][..], |b| &b[..b.len().min(left)])
        } else {
            &[]
        };
        (a, b)
    }

    /// Drops `n` bytes from the head (acknowledged).
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.len());
        let from_ring = n.min(self.ring.len());
        self.ring.discard(from_ring);
        let mut left = n - from_ring;
        self.pieces_len -= left;
        while left > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let take = left.min(front.end - front.start);
            front.start += take;
            left -= take;
            if front.start == front.end {
                self.pieces.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Text(Vec<u8>);
    impl SharedText for Text {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    fn shared(len: usize, salt: u8) -> Arc<dyn SharedText> {
        Arc::new(Text(
            (0..len).map(|i| (i as u8).wrapping_mul(7) ^ salt).collect(),
        ))
    }

    /// The stream's bytes from `offset`, `len` of them, read segment by
    /// segment as the sender does.
    fn read(buf: &SendBuffer, mut offset: usize, mut len: usize) -> Vec<u8> {
        let mut out = vec![];
        while len > 0 {
            let take = buf.reach(offset).min(len).min(1448);
            assert!(take > 0, "nothing reachable at {offset}");
            let (a, b) = buf.peek(offset, take);
            assert_eq!(a.len() + b.len(), take, "two slices hold what reach says");
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            (offset, len) = (offset + take, len - take);
        }
        out
    }

    #[test]
    fn copied_and_shared_text_make_one_stream_in_order() {
        let limit = 1 << 20;
        let mut buf = SendBuffer::default();
        let big = shared(100_000, 1);
        let mut expect = vec![];
        assert_eq!(buf.push(b"head", limit), 4);
        expect.extend_from_slice(b"head");
        assert_eq!(buf.push_shared(&big, 10, 60_010, limit), 60_000);
        expect.extend_from_slice(&big.bytes()[10..60_010]);
        assert_eq!(buf.push(b"middle", limit), 6, "after a piece: a piece");
        expect.extend_from_slice(b"middle");
        assert_eq!(
            buf.push_shared(&big, 0, 100, limit),
            100,
            "a short run is copied"
        );
        expect.extend_from_slice(&big.bytes()[..100]);
        assert_eq!(buf.push_shared(&big, 50_000, 100_000, limit), 50_000);
        expect.extend_from_slice(&big.bytes()[50_000..]);
        assert_eq!(buf.len(), expect.len());
        assert_eq!(read(&buf, 0, expect.len()), expect);
        assert_eq!(
            buf.reach(0),
            4 + 60_000,
            "the ring's bytes and the first piece"
        );
        assert_eq!(buf.tail_reach(), 106 + 50_000);
        // Acknowledged bytes go, across pieces; the rest reads the same.
        buf.discard(30_000);
        assert_eq!(read(&buf, 0, expect.len() - 30_000), expect[30_000..]);
        buf.discard(30_010);
        assert_eq!(read(&buf, 0, buf.len()), expect[60_010..]);
        buf.discard(buf.len());
        assert!(buf.is_empty());
        assert_eq!(buf.allocated(), buf.ring.allocated(), "no piece is held");
        // Empty again: written bytes take the ring.
        assert_eq!(buf.push(b"again", limit), 5);
        assert!(buf.pieces.is_empty());
    }

    #[test]
    fn the_limit_holds_for_shared_text_too() {
        let mut buf = SendBuffer::default();
        let big = shared(100_000, 2);
        assert_eq!(buf.push_shared(&big, 0, 100_000, 70_000), 70_000);
        assert_eq!(buf.push_shared(&big, 70_000, 100_000, 70_000), 0);
        assert_eq!(buf.push(b"x", 70_000), 0);
        assert_eq!(
            buf.allocated(),
            70_000,
            "a shared piece counts what it holds"
        );
        buf.discard(20_000);
        assert_eq!(buf.push_shared(&big, 70_000, 100_000, 70_000), 20_000);
        assert_eq!(read(&buf, 0, 70_000), big.bytes()[20_000..90_000]);
    }
}
