//! A byte ring that grows on demand up to a limit, so that an idle
//! connection holds no buffer memory at all.

/// The smallest allocation, to avoid many tiny regrowths.
const MIN_ALLOC: usize = 4096;

#[derive(Debug, Default)]
pub struct Ring {
    buf: Vec<u8>,
    head: usize,
    len: usize,
}

impl Ring {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes allocated (for memory accounting).
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Makes room for `total` bytes from the head (committed or not),
    /// growing to a power of two no larger than `limit`.
    pub fn reserve(&mut self, total: usize, limit: usize) {
        if total <= self.buf.len() {
            return;
        }
        let cap = total
            .next_power_of_two()
            .max(MIN_ALLOC)
            .min(limit.max(total));
        let mut grown = vec![0u8; cap];
        // Keep every byte's place relative to the head, including data
        // written beyond `len` (out-of-order segments).
        let old = self.buf.len();
        if old > 0 {
            let (a, b) = self.buf.split_at(self.head);
            grown[..b.len()].copy_from_slice(b);
            grown[b.len()..old].copy_from_slice(a);
        }
        self.buf = grown;
        self.head = 0;
    }

    /// Frees the storage if nothing is held.
    pub fn release_if_empty(&mut self) {
        if self.len == 0 {
            self.buf = Vec::new();
            self.head = 0;
        }
    }

    /// Appends as much of `data` as fits within `limit` bytes; returns how much.
    pub fn push(&mut self, data: &[u8], limit: usize) -> usize {
        let n = data.len().min(limit.saturating_sub(self.len));
        if n > 0 {
            self.write_at(self.len, &data[..n], limit);
            self.len += n;
        }
        n
    }

    /// Writes `data` at `offset` from the head without committing it; the
    /// caller keeps `offset + data.len() <= limit`.
    pub fn write_at(&mut self, offset: usize, data: &[u8], limit: usize) {
        let (a, b) = self.spare_at(offset, data.len(), limit);
        let first = a.len();
        a.copy_from_slice(&data[..first]);
        b.copy_from_slice(&data[first..]);
    }

    /// The `n` bytes at `offset` from the head, as one or two slices, to be
    /// written and later committed; the caller keeps `offset + n <= limit`.
    pub fn spare_at(&mut self, offset: usize, n: usize, limit: usize) -> (&mut [u8], &mut [u8]) {
        if n == 0 {
            return (&mut [], &mut []);
        }
        self.reserve(offset + n, limit);
        let cap = self.buf.len();
        let start = (self.head + offset) % cap;
        let first = n.min(cap - start);
        let (wrapped, from_start) = self.buf.split_at_mut(start);
        (&mut from_start[..first], &mut wrapped[..n - first])
    }

    /// Makes `n` bytes written past the end part of the content.
    pub fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.buf.len());
    }

    /// Up to `len` bytes at `offset` from the head, as one or two slices.
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let len = len.min(self.len.saturating_sub(offset));
        if len == 0 {
            return (&[], &[]);
        }
        let cap = self.buf.len();
        let start = (self.head + offset) % cap;
        let first = len.min(cap - start);
        (&self.buf[start..start + first], &self.buf[..len - first])
    }

    /// Moves up to `out.len()` bytes out; returns how many.
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let (a, b) = self.peek(0, out.len());
        let n = a.len() + b.len();
        out[..a.len()].copy_from_slice(a);
        out[a.len()..n].copy_from_slice(b);
        self.discard(n);
        n
    }

    /// Drops `n` bytes from the head.
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        // The head only moves forward: data written beyond `len` (out of
        // order) keeps its place relative to it.
        self.head = (self.head + n) % self.buf.len();
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_wrapping_and_growing() {
        let mut r = Ring::default();
        assert_eq!(r.allocated(), 0);
        assert_eq!(r.push(&[1; 3000], 8192), 3000);
        assert_eq!(r.allocated(), 4096);
        let mut out = [0u8; 2000];
        assert_eq!(r.pop(&mut out), 2000);
        // Wraps around the 4096 bytes, then grows past them keeping order.
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        assert_eq!(r.push(&data, 8192), 4000);
        assert_eq!(r.len(), 5000);
        assert!(r.allocated() >= 5000);
        r.discard(1000);
        let (a, b) = r.peek(0, 4000);
        let got: Vec<u8> = a.iter().chain(b).copied().collect();
        assert_eq!(got, data);
        assert_eq!(r.push(&[0; 10000], 8192), 8192 - 4000);
        // Out-of-order write, then commit.
        let mut r = Ring::default();
        r.write_at(5, b"world", 64);
        r.write_at(0, b"hello", 64);
        r.commit(10);
        let mut out = [0u8; 10];
        r.pop(&mut out);
        assert_eq!(&out, b"helloworld");
        r.release_if_empty();
        assert_eq!(r.allocated(), 0);
    }
}
