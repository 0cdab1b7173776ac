//! The per-table in-memory ordered index of the log-structured store: index key → where
//! the record lives in the log ([`Loc`]) and the item's DynamoDB size ([`Slot`]).
//!
//! Keys are tern index keys (`partition_hash ‖ pk length ‖ pk ‖ sort key`): at least
//! [`PREFIX_LEN`] bytes whose first 8 are a well-mixed 64-bit hash in big-endian, the
//! *prefix*. Many keys share a prefix (a partition with sort keys: up to millions), and
//! distinct partitions may collide on it. Order is plain bytewise order of whole keys.
//!
//! # Structure: ordered buckets
//!
//! * **Entries** are fixed 32-byte records (a comparison `word: u64`, key offset `u32` and
//!   length `u32` into the arena, `Loc`, `size_bytes`) kept in sorted vectors: no
//!   allocation per key, no pointer per comparison. A search compares words (inline) and
//!   reads the key from the arena only when the words tie.
//! * **Arena**: every key's bytes, appended once into pages of 1 MiB (only the first page
//!   grows gradually, so small tables stay small and no append copies more than a page).
//!   A key is addressed by a `u32` offset (page index ‖ offset in page): the arena holds
//!   at most 4 GiB. [`Index::has_room_for`] answers whether a new key fits
//!   (`limits::KEY_ARENA_LIVE_MAX_BYTES` of live keys, ~3.75 GiB): the store asks before
//!   it appends a record, so a full arena refuses a write instead of panicking after it. Replacing a slot does not
//!   touch the arena; a removed key's bytes become garbage, and once the garbage exceeds
//!   the live bytes the arena is rebuilt (in key order) and the offsets rewritten.
//! * **Buckets**: `2^bits` of them, bucket `i` holding the keys whose prefix's top `bits`
//!   bits equal `i`, so walking the buckets in index order, each in order, is global key
//!   order. In a small bucket (one sorted vector, at most `SMALL_MAX` entries) the words
//!   are the prefixes, uniform over the bucket's range: a lookup shifts to the bucket,
//!   guesses the position by interpolation and gallops from there, touching a cache line
//!   or two of entries and then the key. When the average occupancy exceeds
//!   `MAX_AVG_OCCUPANCY` (16) the bucket count doubles (each bucket splits in two by the
//!   next prefix bit, order preserved; one O(n) pass, ~15 ms at 1 M keys); below
//!   `MIN_AVG_OCCUPANCY` (2) it halves (adjacent pairs merge).
//! * **Big buckets**: splitting cannot separate keys of one prefix, so a bucket past
//!   `SMALL_MAX` entries becomes a list of sorted *chunks* of at most `CHUNK_MAX` (256)
//!   entries: binary search over the chunks' last entries, then in one chunk, and an
//!   insert moves at most one chunk (8 KiB). Its words are taken after `cpl`, a length
//!   all its keys share (for one partition: hash, partition key and any common start
//!   of the sort keys), so the search compares sort key bytes without touching the arena.
//!   Chunks split evenly, except for keys arriving in order at either end of the bucket,
//!   which leave full chunks; an underfull chunk merges with or refills from a neighbour.
//!   A big bucket turns back into a small one at `SMALL_MAX / 2` entries (hysteresis).
//!
//! # Invariants (`Index::check`, asserted in debug builds after every structural change
//! and by the tests)
//!
//! * `buckets.len() == 1 << bits`; every key sits in the bucket of its prefix's top bits;
//! * the keys, read bucket by bucket and chunk by chunk, are strictly ascending;
//! * a small bucket holds at most `SMALL_MAX` entries and its words are the prefixes;
//!   a big one holds more than `SMALL_MAX / 2` in non-empty chunks of at most
//!   `CHUNK_MAX`, `len` is their sum, all its keys share their first `cpl` bytes and
//!   every word is `word_at(key, cpl)`;
//! * `len`, `size_bytes` and the arena's live byte count are the sums over the entries.
//!
//! # Measured (release, 2-core EPYC VM, `tests::memory_per_item`, `tests::timings`)
//!
//! * Memory: **37.1 heap bytes per item plus the key bytes** at 1 M random 24-byte keys
//!   (61.1 B per item in all; 37–40 B across bucket doublings; 39.6 B at the 200 k keys
//!   the debug-build test uses), against a target of 48. The 32-byte entry dominates:
//!   entry vectors grow by a quarter rather than doubling and are trimmed when they split
//!   or shrink. One 1 M-key partition (16-byte keys): 38.4 B plus the keys.
//! * Time at 1 M random keys: get (hit) ~134 ns in the criterion bench
//!   (`benches/benches/storage.rs`, `index_1M`; the hash-map `Table`: ~107 ns), 340–410 ns
//!   with cold caches over all keys (`Table`: ~615 ns); insert 350–550 ns. A million
//!   random inserts into one partition take about 0.9–1.1 s.
#![forbid(unsafe_code)]

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use crate::limits::{KEY_ARENA_LIVE_MAX_BYTES, KEY_ARENA_PAGE_SHIFT, KEY_ARENA_PAGES_MAX};

/// Where a record lives in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

/// What the index holds per key: the record's location and the item's DynamoDB size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub loc: Loc,
    pub size_bytes: u32,
}

/// Length of the hash prefix every key starts with.
pub const PREFIX_LEN: usize = 8;

/// Longest key accepted: the log's bound (tern's keys are a few KiB at most).
pub use crate::limits::KEY_MAX_BYTES as MAX_KEY_LEN;

/// Double the bucket count when `len > buckets × MAX_AVG_OCCUPANCY`.
const MAX_AVG_OCCUPANCY: usize = 16;
/// Halve it when `len < buckets × MIN_AVG_OCCUPANCY`. A doubling leaves an average of 8, a
/// halving one below 4: neither can follow the other without many inserts or removals.
const MIN_AVG_OCCUPANCY: usize = 2;
/// The bucket count never exceeds `1 << MAX_BUCKET_BITS`.
const MAX_BUCKET_BITS: u32 = 32;
/// A bucket past this many entries becomes chunked; back to one vector at half of it.
const SMALL_MAX: usize = 256;
/// Largest chunk of a big bucket (8 KiB of entries: one insert moves at most that).
const CHUNK_MAX: usize = 256;
/// A chunk below this after a removal is merged with or refilled from a neighbour.
const CHUNK_MIN: usize = CHUNK_MAX / 4;
/// log2 of the arena page size (1 MiB).
const PAGE_SHIFT: u32 = KEY_ARENA_PAGE_SHIFT;
/// The first arena page starts this small and doubles up to a full page.
const FIRST_PAGE_MIN: usize = 256;
/// Entry vectors grow by `len / GROWTH_DIVISOR` (at least `MIN_GROWTH`), not by doubling:
/// memory matters more here than the occasional extra reallocation.
const GROWTH_DIVISOR: usize = 4;
const MIN_GROWTH: usize = 2;
/// Estimated allocator bookkeeping per heap allocation (glibc: an 8-byte header and
/// rounding to 16), counted by `Index::heap_bytes`.
const ALLOC_OVERHEAD: usize = 16;

/// The bounds above that tests shrink to exercise every structural path with few keys.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_avg_occupancy: usize,
    min_avg_occupancy: usize,
    small_max: usize,
    chunk_max: usize,
    chunk_min: usize,
    page_shift: u32,
    /// Longest key (at most a page).
    key_max: usize,
    /// Arena pages addressable (`u32` offsets: at most `2^(32 − page_shift)`).
    pages_max: usize,
    /// Live key bytes `has_room_for` allows: at most `arena_live_max()` (a store may
    /// choose less, `StoreConfig::index_key_bytes_max`).
    key_bytes_max: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        max_avg_occupancy: MAX_AVG_OCCUPANCY,
        min_avg_occupancy: MIN_AVG_OCCUPANCY,
        small_max: SMALL_MAX,
        chunk_max: CHUNK_MAX,
        chunk_min: CHUNK_MIN,
        page_shift: PAGE_SHIFT,
        key_max: MAX_KEY_LEN,
        pages_max: KEY_ARENA_PAGES_MAX as usize,
        key_bytes_max: KEY_ARENA_LIVE_MAX_BYTES,
    };

    /// Longest key these limits accept: a key never straddles arena pages.
    const fn max_key_len(&self) -> usize {
        if self.key_max < 1 << self.page_shift {
            self.key_max
        } else {
            1 << self.page_shift
        }
    }

    /// Live key bytes under which a new key always has room (`limits`'s argument: every
    /// page but the last holds at least `page − max_key_len + 1` bytes).
    const fn arena_live_max(&self) -> u64 {
        (self.pages_max as u64 - 1) * ((1u64 << self.page_shift) - self.max_key_len() as u64 + 1)
    }
}

// The store's published bound is the default limits' own.
const _: () = assert!(Limits::DEFAULT.arena_live_max() == KEY_ARENA_LIVE_MAX_BYTES);
const _: () = assert!(Limits::DEFAULT.max_key_len() == MAX_KEY_LEN);
const _: () = assert!(Limits::DEFAULT.pages_max as u64 == KEY_ARENA_PAGES_MAX);

// A small bucket must fit in one chunk when it joins a big one.
const _: () = assert!(SMALL_MAX <= CHUNK_MAX && CHUNK_MIN * 2 <= CHUNK_MAX);
const _: () = assert!(MAX_KEY_LEN <= 1 << PAGE_SHIFT && PAGE_SHIFT < 32);
const _: () = assert!(KEY_ARENA_PAGES_MAX == 1 << (32 - PAGE_SHIFT));

/// One key: 32 bytes, no pointer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// What searches compare first: `word_at(key, at)`, where `at` is 0 in a small bucket
    /// (the word is the key's prefix) and the bucket's `cpl` in a big one.
    word: u64,
    key_off: u32,
    key_len: u32,
    loc: Loc,
    size_bytes: u32,
}

const _: () = assert!(size_of::<Entry>() == 32);

impl Entry {
    fn slot(&self) -> Slot {
        Slot {
            loc: self.loc,
            size_bytes: self.size_bytes,
        }
    }
}

/// The 8 bytes of `bytes` from `at` on, zero-padded, as a big-endian number. For byte
/// strings that agree on their first `at` bytes, a smaller word means a smaller string
/// (a missing byte pads as 0, and a string that ends first is the smaller); equal words
/// decide nothing.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(rest) = bytes.get(at..) {
        let n = rest.len().min(8);
        word[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(word)
}

/// The partition prefix of a key passed to a point operation, or a panic.
fn key_prefix(key: &[u8]) -> u64 {
    assert!(
        key.len() >= PREFIX_LEN,
        "index keys are at least 8 bytes (a 64-bit hash prefix), got {}",
        key.len()
    );
    word_at(key, 0)
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The key bytes, in pages of `1 << page_shift` bytes addressed by `u32` offsets.
#[derive(Debug)]
struct Arena {
    pages: Vec<Vec<u8>>,
    page_shift: u32,
    pages_max: usize,
    /// Σ length of the keys entries refer to.
    live: u64,
    /// Bytes of keys no entry refers to any more (page tails not counted).
    garbage: u64,
}

impl Arena {
    fn new(limits: &Limits) -> Arena {
        Arena {
            pages: Vec::new(),
            page_shift: limits.page_shift,
            pages_max: limits.pages_max,
            live: 0,
            garbage: 0,
        }
    }

    /// An empty arena whose first page has room for `bytes` (up to a page).
    fn with_capacity(limits: &Limits, bytes: u64) -> Arena {
        let mut arena = Arena::new(limits);
        if bytes > 0 {
            let first = bytes.min(1 << limits.page_shift) as usize;
            arena.pages.push(Vec::with_capacity(first));
        }
        arena
    }

    fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// Pages addressable (at most what `u32` offsets reach).
    fn max_pages(&self) -> usize {
        self.pages_max
    }

    /// (page, offset in page) of an entry's key.
    fn address(&self, e: &Entry) -> (usize, usize) {
        let page = (e.key_off >> self.page_shift) as usize;
        let start = (e.key_off & ((1 << self.page_shift) - 1)) as usize;
        (page, start)
    }

    fn key(&self, e: &Entry) -> &[u8] {
        let (page, start) = self.address(e);
        &self.pages[page][start..start + e.key_len as usize]
    }

    /// Whether `push`ing `len` more bytes would need a page past the `u32` offset space.
    fn is_full_for(&self, len: usize) -> bool {
        match self.pages.last() {
            Some(p) if p.len() + len <= self.page_size() => false,
            _ => self.pages.len() >= self.max_pages(),
        }
    }

    /// Appends `key` (at most a page long); returns its offset.
    fn push(&mut self, key: &[u8]) -> u32 {
        let page_size = self.page_size();
        debug_assert!(key.len() <= page_size);
        let fits = matches!(self.pages.last(), Some(p) if p.len() + key.len() <= page_size);
        if !fits {
            assert!(
                self.pages.len() < self.max_pages(),
                "index key arena is full: a key was inserted without `has_room_for`"
            );
            let capacity = if self.pages.is_empty() {
                FIRST_PAGE_MIN.max(key.len()).min(page_size)
            } else {
                page_size
            };
            self.pages.push(Vec::with_capacity(capacity));
        }
        let index = self.pages.len() - 1;
        let page = &mut self.pages[index];
        if page.len() + key.len() > page.capacity() {
            // Only a first page (or one sized by a compaction) gets here: double it.
            let want = (page.capacity() * 2)
                .max(page.len() + key.len())
                .min(page_size);
            page.reserve_exact(want - page.len());
        }
        let off = (index << self.page_shift) | page.len();
        page.extend_from_slice(key);
        self.live += key.len() as u64;
        u32::try_from(off).expect("page count is bounded by max_pages")
    }

    /// Forgets the key of `e`: garbage, unless it is the newest key (then taken back).
    fn release(&mut self, e: &Entry) {
        let len = e.key_len as usize;
        self.live -= len as u64;
        let (page, start) = self.address(e);
        let newest = page + 1 == self.pages.len();
        match self.pages.last_mut() {
            Some(last) if newest && start + len == last.len() => last.truncate(start),
            _ => self.garbage += len as u64,
        }
    }

    fn heap_bytes(&self) -> usize {
        vec_heap_bytes(self.pages.capacity(), size_of::<Vec<u8>>())
            + self
                .pages
                .iter()
                .map(|p| vec_heap_bytes(p.capacity(), 1))
                .sum::<usize>()
    }
}

/// Heap bytes of a vector's buffer, with the allocator's bookkeeping.
fn vec_heap_bytes(capacity: usize, elem: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        capacity * elem + ALLOC_OVERHEAD
    }
}

/// Makes room for one more entry, growing by a fraction rather than doubling.
fn reserve_one(v: &mut Vec<Entry>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / GROWTH_DIVISOR).max(MIN_GROWTH));
    }
}

/// Gives back capacity once more than half of it is unused.
fn trim(v: &mut Vec<Entry>) {
    if v.capacity() > 2 * v.len() + MIN_GROWTH {
        v.shrink_to(v.len() + v.len() / GROWTH_DIVISOR);
    }
}

/// A vector holding exactly `entries`.
fn exact(entries: &[Entry]) -> Vec<Entry> {
    entries.to_vec()
}

/// Sets every entry's word to `word_at(key, at)`.
fn set_words(chunks: &mut [Vec<Entry>], at: usize, arena: &Arena) {
    for e in chunks.iter_mut().flatten() {
        e.word = word_at(arena.key(e), at);
    }
}

/// The partition point of `before` in `v` (true, then false), searched outwards from
/// `from` with doubling steps: a few probes when `from` is a good guess, `2 log n` at worst.
fn gallop(v: &[Entry], from: usize, before: impl Fn(&Entry) -> bool) -> usize {
    let from = from.min(v.len());
    // The answer lies in [lo, hi].
    let (mut lo, mut hi) = (0, v.len());
    let mut step = 1;
    if from < v.len() && before(&v[from]) {
        lo = from + 1;
        while from + step < v.len() {
            if !before(&v[from + step]) {
                hi = from + step;
                break;
            }
            lo = from + step + 1;
            step *= 2;
        }
    } else {
        hi = from;
        while step <= from {
            if before(&v[from - step]) {
                lo = from - step + 1;
                break;
            }
            hi = from - step;
            step *= 2;
        }
    }
    lo + v[lo..hi].partition_point(before)
}

/// The keys of one bucket, in order.
#[derive(Debug)]
enum Bucket {
    /// At most `small_max` entries in one sorted vector; words are prefixes.
    Small(Vec<Entry>),
    /// More than `small_max / 2`, in sorted chunks.
    Big(Box<Big>),
}

#[derive(Debug)]
struct Big {
    /// Non-empty, each at most `chunk_max` entries; ascending across chunks.
    chunks: Vec<Vec<Entry>>,
    /// Σ chunk lengths.
    len: usize,
    /// A common prefix length of all the keys here, where the entries' words are taken:
    /// in a big partition that skips the hash and the partition key, so searches compare
    /// sort key bytes without reading the arena. It shrinks when an insert needs it to,
    /// and is recomputed only when the bucket is rebuilt.
    cpl: u32,
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::Small(Vec::new())
    }
}

impl Bucket {
    /// The bucket as chunks: a small bucket is one (possibly empty) chunk.
    fn chunks(&self) -> &[Vec<Entry>] {
        match self {
            Bucket::Small(v) => std::slice::from_ref(v),
            Bucket::Big(big) => &big.chunks,
        }
    }

    fn chunks_mut(&mut self) -> &mut [Vec<Entry>] {
        match self {
            Bucket::Small(v) => std::slice::from_mut(v),
            Bucket::Big(big) => &mut big.chunks,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Bucket::Small(v) if v.is_empty())
    }

    /// Where the words are taken.
    fn words_at(&self) -> usize {
        match self {
            Bucket::Small(_) => 0,
            Bucket::Big(big) => big.cpl as usize,
        }
    }

    /// The non-empty chunks, consuming the bucket.
    fn into_chunks(self) -> Vec<Vec<Entry>> {
        match self {
            Bucket::Small(v) if v.is_empty() => Vec::new(),
            Bucket::Small(v) => vec![v],
            Bucket::Big(big) => big.chunks,
        }
    }

    /// A bucket of these ordered chunks (each at most `chunk_max`), small if it can be.
    /// `words_at`: where the entries' words were taken, if all at one place.
    fn from_chunks(
        mut chunks: Vec<Vec<Entry>>,
        words_at: Option<usize>,
        arena: &Arena,
        limits: &Limits,
    ) -> Bucket {
        chunks.retain(|c| !c.is_empty());
        let len = chunks.iter().map(Vec::len).sum();
        if len <= limits.small_max {
            let mut v = if chunks.len() == 1 {
                chunks.pop().expect("one chunk")
            } else {
                let mut v = Vec::with_capacity(len);
                chunks.iter().for_each(|c| v.extend_from_slice(c));
                v
            };
            if words_at != Some(0) {
                set_words(std::slice::from_mut(&mut v), 0, arena);
            }
            v.shrink_to_fit();
            Bucket::Small(v)
        } else {
            let first = arena.key(&chunks[0][0]);
            let last = chunks.last().and_then(|c| c.last()).expect("non-empty");
            let cpl = common_prefix_len(first, arena.key(last));
            if words_at != Some(cpl) {
                set_words(&mut chunks, cpl, arena);
            }
            chunks.shrink_to_fit();
            Bucket::Big(Box::new(Big {
                chunks,
                len,
                cpl: cpl as u32,
            }))
        }
    }

    /// A small bucket that outgrew `small_max`, cut into half-full chunks.
    fn chunked(v: Vec<Entry>, arena: &Arena, limits: &Limits) -> Bucket {
        let piece = (limits.chunk_max / 2).max(1);
        let chunks = v.chunks(piece).map(exact).collect();
        Bucket::from_chunks(chunks, Some(0), arena, limits)
    }

    /// Splits by the prefix bit `bit` (the bit below those all entries here share):
    /// entries with it clear, then those with it set.
    fn split(self, bit: u64, arena: &Arena, limits: &Limits) -> (Bucket, Bucket) {
        match self {
            Bucket::Small(mut v) => {
                let at = v.partition_point(|e| e.word & bit == 0);
                let high = exact(&v[at..]);
                v.truncate(at);
                v.shrink_to_fit();
                (Bucket::Small(v), Bucket::Small(high))
            }
            Bucket::Big(big) => {
                let low = |e: &Entry| word_at(arena.key(e), 0) & bit == 0;
                let mut lows = big.chunks;
                // Chunks wholly low stay; the first other one may straddle the bit.
                let c = lows.partition_point(|ch| low(ch.last().expect("chunks are non-empty")));
                let mut highs = lows.split_off(c);
                if let Some(first) = highs.first_mut() {
                    let at = first.partition_point(low);
                    if at > 0 {
                        lows.push(exact(&first[..at]));
                        first.drain(..at);
                        trim(first);
                    }
                }
                let at = Some(big.cpl as usize);
                (
                    Bucket::from_chunks(lows, at, arena, limits),
                    Bucket::from_chunks(highs, at, arena, limits),
                )
            }
        }
    }

    /// The bucket holding `self`'s entries followed by `high`'s.
    fn concat(self, high: Bucket, arena: &Arena, limits: &Limits) -> Bucket {
        match (self, high) {
            (low, high) if high.is_empty() => low,
            (low, high) if low.is_empty() => high,
            (Bucket::Small(mut low), Bucket::Small(high))
                if low.len() + high.len() <= limits.small_max =>
            {
                low.reserve_exact(high.len());
                low.extend_from_slice(&high);
                Bucket::Small(low)
            }
            (low, high) => {
                let at = (low.words_at() == high.words_at()).then_some(low.words_at());
                let mut chunks = low.into_chunks();
                chunks.extend(high.into_chunks());
                Bucket::from_chunks(chunks, at, arena, limits)
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Bucket::Small(v) => vec_heap_bytes(v.capacity(), size_of::<Entry>()),
            Bucket::Big(big) => {
                size_of::<Big>()
                    + ALLOC_OVERHEAD
                    + vec_heap_bytes(big.chunks.capacity(), size_of::<Vec<Entry>>())
                    + big
                        .chunks
                        .iter()
                        .map(|c| vec_heap_bytes(c.capacity(), size_of::<Entry>()))
                        .sum::<usize>()
            }
        }
    }
}

/// Where a key is or would go: bucket, chunk in it, and the binary-search result there.
#[derive(Debug, Clone, Copy)]
struct Locus {
    bucket: usize,
    chunk: usize,
    at: Result<usize, usize>,
}

/// A gap between entries (or an entry, as the gap before it), ordered like the entries:
/// entry `(b, c, e)` lies before gap `(b', c', e')` iff the triple is smaller. The same
/// gap has several spellings (`(b, c, len)` = `(b, c + 1, 0)`, `(b, chunks, 0)` =
/// `(b + 1, 0, 0)`); the iterator only ever compares a gap against an entry or against
/// the other end, for which any spelling gives the right answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    bucket: usize,
    chunk: usize,
    entry: usize,
}

/// The per-table ordered index: index key → [`Slot`]. See the module documentation.
pub struct Index {
    /// `1 << bits` buckets, by the top `bits` bits of the prefix.
    buckets: Vec<Bucket>,
    bits: u32,
    arena: Arena,
    len: usize,
    /// Σ `size_bytes` of the entries.
    size_bytes: u64,
    limits: Limits,
}

impl Default for Index {
    fn default() -> Index {
        Index::new()
    }
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.len)
            .field("buckets", &self.buckets.len())
            .field("size_bytes", &self.size_bytes)
            .field("arena_live", &self.arena.live)
            .field("arena_garbage", &self.arena.garbage)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl Index {
    pub fn new() -> Index {
        Index::with_limits(Limits::DEFAULT)
    }

    fn with_limits(limits: Limits) -> Index {
        Index {
            buckets: vec![Bucket::default()],
            bits: 0,
            arena: Arena::new(&limits),
            len: 0,
            size_bytes: 0,
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Σ `size_bytes` of the entries.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Heap bytes held: the capacity of every vector (buckets, entries, chunks, arena
    /// pages) plus an estimated `ALLOC_OVERHEAD` per allocation. Walks the buckets.
    pub fn heap_bytes(&self) -> usize {
        vec_heap_bytes(self.buckets.capacity(), size_of::<Bucket>())
            + self.buckets.iter().map(Bucket::heap_bytes).sum::<usize>()
            + self.arena.heap_bytes()
    }

    pub fn get(&self, key: &[u8]) -> Option<Slot> {
        let l = self.locate(key, key_prefix(key));
        let i = l.at.ok()?;
        Some(self.buckets[l.bucket].chunks()[l.chunk][i].slot())
    }

    /// Whether `insert(key, ..)` has room: a replaced key always does; a new one while the
    /// live key bytes stay within the arena's bound (`limits::KEY_ARENA_LIVE_MAX_BYTES`).
    /// Call before making an insert irrevocable (the store: before appending a record).
    pub fn has_room_for(&self, key: &[u8]) -> bool {
        self.has_room_for_all([key])
    }

    /// Whether every key of `keys` (distinct) has room together: what a batch of inserts
    /// checks before it applies any.
    pub fn has_room_for_all<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]> + Clone) -> bool {
        let max = self.limits.key_bytes_max.min(self.limits.arena_live_max());
        let all: u64 = keys.clone().into_iter().map(|k| k.len() as u64).sum();
        // Cheap unless the arena is nearly full: then only keys not present count.
        self.arena.live + all <= max || {
            let new: u64 = keys
                .into_iter()
                .filter(|k| self.get(k).is_none())
                .map(|k| k.len() as u64)
                .sum();
            self.arena.live + new <= max
        }
    }

    /// Lowers the live key bytes `has_room_for` allows (never above the arena's bound).
    pub fn set_key_bytes_max(&mut self, max: u64) {
        self.limits.key_bytes_max = max.min(KEY_ARENA_LIVE_MAX_BYTES);
    }

    /// Live key bytes (what `has_room_for` bounds).
    pub fn key_bytes(&self) -> u64 {
        self.arena.live
    }

    /// Inserts or replaces; returns the replaced slot. A new key must have room
    /// ([`Index::has_room_for`]): inserting one without is a bug, and panics.
    pub fn insert(&mut self, key: &[u8], slot: Slot) -> Option<Slot> {
        let prefix = key_prefix(key);
        let l = self.locate(key, prefix);
        match l.at {
            Ok(i) => {
                let e = &mut self.buckets[l.bucket].chunks_mut()[l.chunk][i];
                let old = e.slot();
                e.loc = slot.loc;
                e.size_bytes = slot.size_bytes;
                self.size_bytes = self.size_bytes - old.size_bytes as u64 + slot.size_bytes as u64;
                Some(old)
            }
            Err(i) => {
                assert!(
                    key.len() <= self.limits.max_key_len(),
                    "index keys are at most {} bytes, got {}",
                    self.limits.max_key_len(),
                    key.len()
                );
                if self.arena.is_full_for(key.len()) && self.arena.garbage > 0 {
                    // Offsets change, positions do not: `l` stays valid.
                    self.compact_arena();
                }
                let entry = Entry {
                    // A small bucket's word; `insert_at` retakes it for a big one.
                    word: prefix,
                    key_off: self.arena.push(key),
                    key_len: key.len() as u32,
                    loc: slot.loc,
                    size_bytes: slot.size_bytes,
                };
                self.insert_at(l, i, entry, key);
                self.len += 1;
                self.size_bytes += slot.size_bytes as u64;
                if self.len > self.buckets.len() * self.limits.max_avg_occupancy
                    && self.bits < MAX_BUCKET_BITS
                {
                    self.double();
                }
                None
            }
        }
    }

    /// Removes; returns the removed slot.
    pub fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let l = self.locate(key, key_prefix(key));
        let i = l.at.ok()?;
        let e = self.remove_at(l, i);
        self.len -= 1;
        self.size_bytes -= e.size_bytes as u64;
        self.arena.release(&e);
        if self.len == 0 {
            self.arena = Arena::new(&self.limits);
        } else if self.arena.garbage > self.arena.live {
            self.compact_arena();
        }
        if self.buckets.len() > 1 && self.len < self.buckets.len() * self.limits.min_avg_occupancy {
            self.halve();
        }
        Some(e.slot())
    }

    /// Replaces the location only if the entry still holds `expected` (used by compaction,
    /// which relocates a record while writes may have superseded it). Returns whether it did.
    pub fn relocate(&mut self, key: &[u8], expected: Loc, new: Loc) -> bool {
        let l = self.locate(key, key_prefix(key));
        let Ok(i) = l.at else { return false };
        let e = &mut self.buckets[l.bucket].chunks_mut()[l.chunk][i];
        if e.loc != expected {
            return false;
        }
        e.loc = new;
        true
    }

    /// Entries with keys within the bounds, ascending; `.rev()` descending. Inverted or
    /// empty bounds yield nothing. Bounds may be any length (shorter than 8 bytes too).
    pub fn range<'a>(
        &'a self,
        lower: Bound<&'a [u8]>,
        upper: Bound<&'a [u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], Slot)> + 'a {
        let front = match lower {
            Bound::Unbounded => Pos {
                bucket: 0,
                chunk: 0,
                entry: 0,
            },
            Bound::Included(b) => self.gap(b, false),
            Bound::Excluded(b) => self.gap(b, true),
        };
        let back = match upper {
            Bound::Unbounded => Pos {
                bucket: self.buckets.len(),
                chunk: 0,
                entry: 0,
            },
            Bound::Included(b) => self.gap(b, true),
            Bound::Excluded(b) => self.gap(b, false),
        };
        Range {
            index: self,
            front,
            back,
        }
    }

    /// The gap before the first entry `> b` (`after_equal`) or `>= b`.
    fn gap(&self, b: &[u8], after_equal: bool) -> Pos {
        // A bound shorter than a prefix pads with zeros: every key in its bucket whose
        // prefix equals the padded bound is longer, so greater, which the search sees.
        let l = self.locate(b, word_at(b, 0));
        let entry = match l.at {
            Ok(i) if after_equal => i + 1,
            Ok(i) | Err(i) => i,
        };
        Pos {
            bucket: l.bucket,
            chunk: l.chunk,
            entry,
        }
    }

    fn bucket_of(&self, prefix: u64) -> usize {
        // bits == 0: a shift by 64 is `None`, and there is one bucket.
        prefix.checked_shr(64 - self.bits).unwrap_or(0) as usize
    }

    /// Orders an entry against `probe`, whose word (taken where the entry's was) is
    /// `word`: the words first, the whole keys only on a tie.
    fn cmp(&self, e: &Entry, word: u64, probe: &[u8]) -> Ordering {
        e.word.cmp(&word).then_with(|| self.arena.key(e).cmp(probe))
    }

    /// Binary search of `probe` (word `word`) in `v`, starting from the guess `from` if
    /// there is one.
    fn search(
        &self,
        v: &[Entry],
        word: u64,
        probe: &[u8],
        from: Option<usize>,
    ) -> Result<usize, usize> {
        let before = |e: &Entry| e.word < word;
        let lo = match from {
            Some(from) => gallop(v, from, before),
            None => v.partition_point(before),
        };
        // Entries with an equal word (rarely more than one) are ordered by the whole key.
        let run = gallop(&v[lo..], 0, |e| e.word == word);
        match v[lo..lo + run].binary_search_by(|e| self.arena.key(e).cmp(probe)) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    /// Where `probe` (any length, with `prefix` its zero-padded first 8 bytes) is, or would
    /// be inserted. In a big bucket a probe past every key goes at the end of the last
    /// chunk, one between two chunks at the start of the next.
    fn locate(&self, probe: &[u8], prefix: u64) -> Locus {
        let bucket = self.bucket_of(prefix);
        match &self.buckets[bucket] {
            Bucket::Small(v) => {
                // Prefixes are uniform within the bucket: guess the position from the bits
                // below the bucket's, then gallop from there (a probe or two, usually).
                let below = prefix << self.bits;
                let guess = ((below as u128 * v.len() as u128) >> 64) as usize;
                Locus {
                    bucket,
                    chunk: 0,
                    at: self.search(v, prefix, probe, Some(guess)),
                }
            }
            Bucket::Big(big) => {
                let chunks = &big.chunks;
                let start = Locus {
                    bucket,
                    chunk: 0,
                    at: Err(0),
                };
                let last = chunks.len() - 1;
                let end = Locus {
                    bucket,
                    chunk: last,
                    at: Err(chunks[last].len()),
                };
                // Every key here starts with the first key's `cpl` bytes: a probe that does
                // not lies before or after them all, and one that does has comparable words.
                let cpl = big.cpl as usize;
                let first = self.arena.key(&chunks[0][0]);
                let n = probe.len().min(cpl);
                match probe[..n].cmp(&first[..n]) {
                    Ordering::Less => return start,
                    Ordering::Greater => return end,
                    Ordering::Equal if n < cpl => return start,
                    Ordering::Equal => {}
                }
                let word = word_at(probe, cpl);
                let c = chunks.partition_point(|ch| {
                    let last = ch.last().expect("chunks are non-empty");
                    self.cmp(last, word, probe) == Ordering::Less
                });
                if c == chunks.len() {
                    return end;
                }
                Locus {
                    bucket,
                    chunk: c,
                    at: self.search(&chunks[c], word, probe, None),
                }
            }
        }
    }

    /// Inserts `entry` (for `key`, already in the arena) at entry `i` of the chunk `l` names.
    fn insert_at(&mut self, l: Locus, i: usize, mut entry: Entry, key: &[u8]) {
        let limits = self.limits;
        let arena = &self.arena;
        let bucket = &mut self.buckets[l.bucket];
        match bucket {
            Bucket::Small(v) => {
                reserve_one(v);
                v.insert(i, entry);
                if v.len() > limits.small_max {
                    *bucket = Bucket::chunked(std::mem::take(v), arena, &limits);
                }
            }
            Bucket::Big(big) => {
                let shared = common_prefix_len(key, arena.key(&big.chunks[0][0]));
                if shared < big.cpl as usize {
                    big.cpl = shared as u32;
                    set_words(&mut big.chunks, shared, arena);
                }
                entry.word = word_at(key, big.cpl as usize);
                let chunk = &mut big.chunks[l.chunk];
                reserve_one(chunk);
                chunk.insert(i, entry);
                big.len += 1;
                let n = chunk.len();
                if n > limits.chunk_max {
                    // Keys arriving in order at either end of the bucket (ascending or
                    // descending sort keys) leave full chunks behind; others split evenly.
                    let at = if i + 1 == n {
                        n - 1
                    } else if i == 0 && l.chunk == 0 {
                        1
                    } else {
                        n / 2
                    };
                    let tail = exact(&chunk[at..]);
                    chunk.truncate(at);
                    trim(chunk);
                    big.chunks.insert(l.chunk + 1, tail);
                }
            }
        }
        debug_assert!(self.sorted_around(l.bucket, l.chunk, i));
    }

    /// Whether the entry inserted at `i` of chunk `c` (wherever a chunk split moved it)
    /// is greater than its predecessor and less than its successor in its vector.
    fn sorted_around(&self, b: usize, mut c: usize, mut i: usize) -> bool {
        let chunks = self.buckets[b].chunks();
        while chunks.get(c).is_some_and(|ch| i >= ch.len()) {
            i -= chunks[c].len();
            c += 1;
        }
        let Some(ch) = chunks.get(c) else {
            return false;
        };
        let less = |a: &Entry, b: &Entry| self.arena.key(a) < self.arena.key(b);
        (i == 0 || less(&ch[i - 1], &ch[i])) && (i + 1 >= ch.len() || less(&ch[i], &ch[i + 1]))
    }

    /// Removes entry `i` of the chunk `l` names.
    fn remove_at(&mut self, l: Locus, i: usize) -> Entry {
        let limits = self.limits;
        let bucket = &mut self.buckets[l.bucket];
        match bucket {
            Bucket::Small(v) => {
                let e = v.remove(i);
                trim(v);
                e
            }
            Bucket::Big(big) => {
                let c = l.chunk;
                let e = big.chunks[c].remove(i);
                big.len -= 1;
                if big.chunks[c].is_empty() {
                    big.chunks.remove(c);
                } else if big.chunks[c].len() < limits.chunk_min && big.chunks.len() > 1 {
                    // Merge with a neighbour, or even out with it if both do not fit.
                    let left = if c + 1 < big.chunks.len() { c } else { c - 1 };
                    let (a, b) = big.chunks.split_at_mut(left + 1);
                    let (l, r) = (&mut a[left], &mut b[0]);
                    let total = l.len() + r.len();
                    if total <= limits.chunk_max {
                        l.reserve_exact(r.len());
                        l.extend_from_slice(r);
                        big.chunks.remove(left + 1);
                    } else if l.len() < total / 2 {
                        let moved = total / 2 - l.len();
                        l.extend_from_slice(&r[..moved]);
                        r.drain(..moved);
                        trim(r);
                    } else {
                        let moved = l.split_off(total / 2);
                        r.splice(0..0, moved);
                        trim(l);
                    }
                } else {
                    trim(&mut big.chunks[c]);
                }
                if big.len <= limits.small_max / 2 {
                    let chunks = std::mem::take(&mut big.chunks);
                    let at = Some(big.cpl as usize);
                    *bucket = Bucket::from_chunks(chunks, at, &self.arena, &limits);
                }
                e
            }
        }
    }

    /// Doubles the bucket count: bucket `i` becomes `2i` (next prefix bit clear) and
    /// `2i + 1` (set).
    fn double(&mut self) {
        let bits = self.bits + 1;
        let bit = 1u64 << (64 - bits);
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() * 2);
        for bucket in old {
            let (low, high) = bucket.split(bit, &self.arena, &self.limits);
            buckets.push(low);
            buckets.push(high);
        }
        self.buckets = buckets;
        self.bits = bits;
        debug_assert_eq!(self.check(), Ok(()));
    }

    /// Halves the bucket count: buckets `2i` and `2i + 1` become `i`.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() / 2);
        let mut old = old.into_iter();
        while let (Some(low), Some(high)) = (old.next(), old.next()) {
            buckets.push(low.concat(high, &self.arena, &self.limits));
        }
        self.buckets = buckets;
        self.bits -= 1;
        debug_assert_eq!(self.check(), Ok(()));
    }

    /// Rebuilds the arena with the live keys only, in key order.
    fn compact_arena(&mut self) {
        let fresh = Arena::with_capacity(&self.limits, self.arena.live);
        let old = std::mem::replace(&mut self.arena, fresh);
        for bucket in &mut self.buckets {
            for chunk in bucket.chunks_mut() {
                for e in chunk {
                    e.key_off = self.arena.push(old.key(e));
                }
            }
        }
        debug_assert_eq!(self.arena.live, old.live);
        debug_assert_eq!(self.check(), Ok(()));
    }

    /// Checks every invariant of the module documentation; `Err` names the first broken.
    fn check(&self) -> Result<(), String> {
        let limits = &self.limits;
        if self.buckets.len() != 1 << self.bits {
            return Err(format!(
                "{} buckets for {} bits",
                self.buckets.len(),
                self.bits
            ));
        }
        let (mut len, mut size, mut live) = (0usize, 0u64, 0u64);
        let mut previous: Option<&[u8]> = None;
        for (b, bucket) in self.buckets.iter().enumerate() {
            match bucket {
                Bucket::Small(v) if v.len() > limits.small_max => {
                    return Err(format!("small bucket {b} holds {}", v.len()));
                }
                Bucket::Small(_) => {}
                Bucket::Big(big) => {
                    if big.len <= limits.small_max / 2 {
                        return Err(format!("big bucket {b} holds only {}", big.len));
                    }
                    if big.len != big.chunks.iter().map(Vec::len).sum::<usize>() {
                        return Err(format!("big bucket {b}: len {} is not Σ chunks", big.len));
                    }
                    if let Some(c) = big
                        .chunks
                        .iter()
                        .position(|c| c.is_empty() || c.len() > limits.chunk_max)
                    {
                        let n = big.chunks[c].len();
                        return Err(format!("bucket {b} chunk {c} holds {n}"));
                    }
                }
            }
            let at = bucket.words_at();
            let first = bucket.chunks()[0].first().map(|e| self.arena.key(e));
            for e in bucket.chunks().iter().flatten() {
                let key = self.arena.key(e);
                if key.len() < PREFIX_LEN || self.bucket_of(word_at(key, 0)) != b {
                    return Err(format!("key {key:x?} in bucket {b}"));
                }
                if first.is_some_and(|f| f.get(..at) != key.get(..at)) {
                    return Err(format!("key {key:x?} lacks bucket {b}'s first {at} bytes"));
                }
                if e.word != word_at(key, at) {
                    return Err(format!("key {key:x?}: word {:#x} (at {at})", e.word));
                }
                if previous.is_some_and(|p| p >= key) {
                    return Err(format!("keys out of order at {key:x?}"));
                }
                previous = Some(key);
                len += 1;
                size += e.size_bytes as u64;
                live += e.key_len as u64;
            }
        }
        if (len, size, live) != (self.len, self.size_bytes, self.arena.live) {
            return Err(format!(
                "(len, size_bytes, live key bytes) counted {:?}, kept {:?}",
                (len, size, live),
                (self.len, self.size_bytes, self.arena.live)
            ));
        }
        Ok(())
    }
}

/// The iterator of [`Index::range`]: the entries between two gaps.
struct Range<'a> {
    index: &'a Index,
    /// Entries at or after `front` and before `back` remain.
    front: Pos,
    back: Pos,
}

impl<'a> Range<'a> {
    fn item(&self, p: Pos) -> (&'a [u8], Slot) {
        let index: &'a Index = self.index;
        let e = &index.buckets[p.bucket].chunks()[p.chunk][p.entry];
        (index.arena.key(e), e.slot())
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a [u8], Slot);

    fn next(&mut self) -> Option<Self::Item> {
        while self.front < self.back {
            let Pos { bucket, chunk, .. } = self.front;
            match self.index.buckets[bucket].chunks().get(chunk) {
                Some(ch) if self.front.entry < ch.len() => {
                    let here = self.front;
                    self.front.entry += 1;
                    return Some(self.item(here));
                }
                Some(_) => {
                    self.front = Pos {
                        bucket,
                        chunk: chunk + 1,
                        entry: 0,
                    }
                }
                None => {
                    self.front = Pos {
                        bucket: bucket + 1,
                        chunk: 0,
                        entry: 0,
                    }
                }
            }
        }
        None
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        while self.front < self.back {
            let Pos {
                bucket,
                chunk,
                entry,
            } = self.back;
            if entry > 0 {
                // front < (b, c, e) implies front <= (b, c, e - 1): that entry is in range.
                self.back.entry -= 1;
                return Some(self.item(self.back));
            } else if chunk > 0 {
                let chunks = self.index.buckets[bucket].chunks();
                self.back = Pos {
                    bucket,
                    chunk: chunk - 1,
                    entry: chunks[chunk - 1].len(),
                };
            } else {
                // bucket > 0: back > front >= (0, 0, 0).
                let bucket = bucket - 1;
                self.back = Pos {
                    bucket,
                    chunk: self.index.buckets[bucket].chunks().len(),
                    entry: 0,
                };
            }
        }
        None
    }
}

impl std::iter::FusedIterator for Range<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::hint::black_box;
    use std::ops::RangeBounds;
    use std::time::Instant;

    /// Bounds so small that a handful of keys go through every structural path: chunked
    /// buckets, chunk splits and merges, bucket doubling and halving, arena pages.
    const TINY: Limits = Limits {
        max_avg_occupancy: 2,
        min_avg_occupancy: 1,
        small_max: 4,
        chunk_max: 4,
        chunk_min: 2,
        page_shift: 5,
        key_max: 32,
        pages_max: 1 << 27,
        key_bytes_max: u64::MAX,
    };

    /// An arena of four 256-byte pages and keys of at most 64 bytes: full after 579 live
    /// key bytes (3 × (256 − 64 + 1)).
    const SMALL_ARENA: Limits = Limits {
        page_shift: 8,
        key_max: 64,
        pages_max: 4,
        ..TINY
    };

    /// 1 M keys in release builds; 200 k in debug ones (which would take tens of seconds).
    const BIG_N: usize = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };

    /// An index-key-shaped key: 8-byte prefix, then `rest`.
    fn key(prefix: u64, rest: &[u8]) -> Vec<u8> {
        let mut k = prefix.to_be_bytes().to_vec();
        k.extend_from_slice(rest);
        k
    }

    fn slot(n: u32) -> Slot {
        Slot {
            loc: Loc {
                segment: n % 7,
                offset: n,
                len: n ^ 0x55,
            },
            size_bytes: n % 1000,
        }
    }

    /// The simulator's splitmix64, with helpers for the large tests.
    struct Rng(crate::sim::SplitMix);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(crate::sim::SplitMix(seed))
        }

        fn next(&mut self) -> u64 {
            self.0.next_u64()
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, (self.next() % (i as u64 + 1)) as usize);
            }
        }

        /// A random key of `len` bytes (a random prefix, then random bytes).
        fn key(&mut self, len: usize) -> Vec<u8> {
            let mut k = Vec::with_capacity(len);
            while k.len() < len {
                k.extend_from_slice(&self.next().to_be_bytes());
            }
            k.truncate(len);
            k
        }
    }

    fn everything(ix: &Index) -> Vec<(Vec<u8>, Slot)> {
        ix.range(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, s)| (k.to_vec(), s))
            .collect()
    }

    fn big_buckets(ix: &Index) -> usize {
        ix.buckets
            .iter()
            .filter(|b| matches!(b, Bucket::Big(_)))
            .count()
    }

    #[test]
    fn layout_sizes() {
        assert_eq!(size_of::<Entry>(), 32);
        assert_eq!(size_of::<Bucket>(), 24, "the enum uses Vec's niche");
    }

    #[test]
    fn insert_get_replace_remove_relocate_track_size() {
        let mut ix = Index::new();
        let (a, b) = (key(1, b"a"), key(2, b"b"));
        assert_eq!(ix.insert(&a, slot(5)), None);
        assert_eq!(ix.insert(&a, slot(7)), Some(slot(5)));
        assert_eq!(ix.insert(&b, slot(1)), None);
        assert_eq!((ix.len(), ix.size_bytes()), (2, 8));
        assert_eq!(ix.get(&a), Some(slot(7)));
        assert_eq!(ix.get(&key(1, b"")), None);

        assert!(!ix.relocate(&a, slot(5).loc, slot(9).loc), "superseded");
        assert!(ix.relocate(&a, slot(7).loc, slot(9).loc));
        let moved = Slot {
            loc: slot(9).loc,
            size_bytes: 7,
        };
        assert_eq!(ix.get(&a), Some(moved));
        assert!(
            !ix.relocate(&key(3, b""), slot(7).loc, slot(9).loc),
            "absent"
        );

        assert_eq!(ix.remove(&a), Some(moved));
        assert_eq!(ix.remove(&a), None);
        assert_eq!((ix.len(), ix.size_bytes()), (1, 1));
        assert_eq!(ix.check(), Ok(()));
    }

    #[test]
    fn ranges_with_short_inverted_and_between_prefix_bounds() {
        let mut ix = Index::new();
        let keys = [
            key(0x0100_0000_0000_0000, b""),
            key(0x0100_0000_0000_0000, b"m"),
            key(0x0100_0000_0000_0001, b"a"),
            key(0x0200_0000_0000_0000, b"z"),
        ];
        for (i, k) in keys.iter().enumerate() {
            ix.insert(k, slot(i as u32));
        }
        let count = |lo: Bound<&[u8]>, hi: Bound<&[u8]>| ix.range(lo, hi).count();
        let (m, z) = (keys[1].as_slice(), keys[3].as_slice());
        assert_eq!(count(Bound::Included(z), Bound::Included(m)), 0);
        assert_eq!(count(Bound::Excluded(m), Bound::Excluded(m)), 0);
        assert_eq!(count(Bound::Excluded(m), Bound::Included(m)), 0);
        assert_eq!(count(Bound::Included(m), Bound::Excluded(m)), 0);
        assert_eq!(count(Bound::Included(m), Bound::Included(m)), 1);
        // Bounds shorter than the prefix: [1] precedes every key starting with 1.
        assert_eq!(count(Bound::Included(&[1]), Bound::Excluded(&[2])), 3);
        assert_eq!(count(Bound::Excluded(&[1]), Bound::Included(&[2])), 3);
        assert_eq!(count(Bound::Excluded(&[1, 0]), Bound::Unbounded), 4);
        assert_eq!(count(Bound::Included(&[]), Bound::Excluded(&[])), 0);
        assert_eq!(count(Bound::Unbounded, Bound::Excluded(&[])), 0);
        assert_eq!(count(Bound::Excluded(&[3]), Bound::Unbounded), 0);
        // A bound between two prefixes, and one equal to a whole 8-byte key.
        let between = key(0x0100_0000_0000_0000, b"zz");
        assert_eq!(count(Bound::Excluded(&between), Bound::Unbounded), 2);
        assert_eq!(count(Bound::Unbounded, Bound::Excluded(&keys[0])), 0);
        assert_eq!(count(Bound::Unbounded, Bound::Included(&keys[0])), 1);
        let rev: Vec<Slot> = ix
            .range(Bound::Included(&[1]), Bound::Unbounded)
            .rev()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(rev, vec![slot(3), slot(2), slot(1), slot(0)]);
    }

    #[test]
    #[should_panic(expected = "at least 8 bytes")]
    fn short_keys_panic_on_insert() {
        Index::new().insert(b"short", slot(1));
    }

    #[test]
    #[should_panic(expected = "at least 8 bytes")]
    fn short_keys_panic_on_get() {
        Index::new().get(b"");
    }

    #[test]
    #[should_panic(expected = "at least 8 bytes")]
    fn short_keys_panic_on_remove() {
        Index::new().remove(b"1234567");
    }

    #[test]
    #[should_panic(expected = "at least 8 bytes")]
    fn short_keys_panic_on_relocate() {
        Index::new().relocate(b"1234567", slot(1).loc, slot(2).loc);
    }

    #[test]
    #[should_panic(expected = "at most 32 bytes")]
    fn keys_longer_than_a_page_panic() {
        Index::with_limits(TINY).insert(&[0; 33], slot(1));
    }

    /// Filling the arena to its bound: `has_room_for` turns false for new keys (never for
    /// replacements) before any insert could fail, whatever the key lengths and however
    /// removals fragmented the pages; removing keys makes room again (compaction).
    #[test]
    fn a_full_arena_refuses_new_keys_before_an_insert_could_fail() {
        assert_eq!(SMALL_ARENA.arena_live_max(), 579);
        let mut rng = Rng::new(7);
        for round in 0..200 {
            let mut ix = Index::with_limits(SMALL_ARENA);
            let mut present: Vec<Vec<u8>> = Vec::new();
            let mut refused = 0;
            for step in 0..400 {
                let len = 8 + (rng.next() % 57) as usize;
                let k = rng.key(len);
                if step % 5 == 4 && !present.is_empty() {
                    let at = (rng.next() as usize) % present.len();
                    let gone = present.swap_remove(at);
                    assert!(ix.remove(&gone).is_some());
                    continue;
                }
                if ix.has_room_for(&k) {
                    assert!(ix.key_bytes() + k.len() as u64 <= 579);
                    ix.insert(&k, slot(step));
                    present.push(k);
                } else {
                    refused += 1;
                    assert!(ix.key_bytes() + k.len() as u64 > 579, "round {round}");
                    if let Some(old) = present.first() {
                        assert!(ix.has_room_for(old), "a replacement always has room");
                        ix.insert(&old.clone(), slot(step));
                    }
                }
                assert_eq!(ix.check(), Ok(()));
            }
            assert!(refused > 0, "round {round} never filled the arena");
            assert_eq!(ix.len(), present.len());
            for k in &present {
                assert!(ix.get(k).is_some());
            }
        }
    }

    /// Many partitions plus a few big ones, in random order: buckets double and go big,
    /// chunks split; then most keys go and buckets halve, chunks merge. Order holds.
    #[test]
    fn splits_and_chunks_keep_global_order() {
        let mut rng = Rng::new(1);
        let mut keys: Vec<Vec<u8>> = (0..BIG_N / 4).map(|_| rng.key(24)).collect();
        let big_prefixes: Vec<u64> = (0..8).map(|_| rng.next()).collect();
        for (i, p) in big_prefixes.iter().enumerate() {
            for j in 0..BIG_N / 32 {
                keys.push(key(*p, format!("{i}sk{j:08}").as_bytes()));
            }
        }
        rng.shuffle(&mut keys);
        let mut ix = Index::new();
        let mut model = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.insert(k, slot(i as u32)), None);
            model.insert(k.clone(), slot(i as u32));
        }
        assert_eq!(ix.check(), Ok(()));
        assert!(ix.buckets.len() >= keys.len() / MAX_AVG_OCCUPANCY);
        assert!(big_buckets(&ix) >= 8, "{} big buckets", big_buckets(&ix));
        let want: Vec<(Vec<u8>, Slot)> = model.iter().map(|(k, s)| (k.clone(), *s)).collect();
        assert_eq!(everything(&ix), want);
        let rev: Vec<(Vec<u8>, Slot)> = ix
            .range(Bound::Unbounded, Bound::Unbounded)
            .rev()
            .map(|(k, s)| (k.to_vec(), s))
            .collect();
        assert!(rev.iter().rev().eq(want.iter()));
        // One big partition, both ways.
        let p = big_prefixes[3].to_be_bytes();
        let upper = (big_prefixes[3] + 1).to_be_bytes();
        let within = ix
            .range(Bound::Included(&p), Bound::Excluded(&upper))
            .count();
        assert_eq!(within, BIG_N / 32);
        let within_rev = ix
            .range(Bound::Included(&p), Bound::Excluded(&upper))
            .rev()
            .count();
        assert_eq!(within_rev, BIG_N / 32);

        let buckets_full = ix.buckets.len();
        for k in &keys[keys.len() / 20..] {
            assert!(ix.remove(k).is_some());
            model.remove(k);
        }
        assert_eq!(ix.check(), Ok(()));
        assert!(ix.buckets.len() < buckets_full, "halved");
        let want: Vec<(Vec<u8>, Slot)> = model.iter().map(|(k, s)| (k.clone(), *s)).collect();
        assert_eq!(everything(&ix), want);
        for (k, s) in &model {
            assert_eq!(ix.get(k), Some(*s));
        }
    }

    /// Keys arriving in order at the end (or the start) of one partition fill chunks.
    #[test]
    fn in_order_inserts_fill_chunks() {
        for descending in [false, true] {
            let mut ix = Index::new();
            let n = 100_000u32;
            for i in 0..n {
                let sk = if descending { n - i } else { i };
                ix.insert(&key(42, &sk.to_be_bytes()), slot(i));
            }
            assert_eq!(ix.check(), Ok(()));
            let Bucket::Big(big) = &ix.buckets[ix.bucket_of(42)] else {
                panic!("one partition of {n} keys is a big bucket");
            };
            let fill = n as f64 / (big.chunks.len() * CHUNK_MAX) as f64;
            assert!(fill > 0.95, "chunks {:.0} % full", fill * 100.0);
        }
    }

    /// Insert/remove churn over a bounded live set keeps the arena (and all else) bounded.
    #[test]
    fn arena_compaction_bounds_memory_under_churn() {
        let mut rng = Rng::new(7);
        let mut ix = Index::new();
        let live: Vec<Vec<u8>> = (0..10_000).map(|_| rng.key(40)).collect();
        for k in &live {
            ix.insert(k, slot(1));
        }
        let settled = ix.heap_bytes();
        let mut live = live;
        let mut peak = 0;
        for round in 0..200_000 {
            let i = (rng.next() % live.len() as u64) as usize;
            assert!(ix.remove(&live[i]).is_some());
            live[i] = rng.key(24 + (round % 32));
            ix.insert(&live[i], slot(round as u32));
            // Replacing a value must not append the key again.
            ix.insert(&live[i], slot(1));
            peak = peak.max(ix.heap_bytes());
            assert!(ix.arena.garbage <= ix.arena.live);
        }
        assert_eq!(ix.check(), Ok(()));
        assert_eq!(ix.len(), live.len());
        println!("churn: heap {settled} B after filling, peak {peak} B over 200 k replacements");
        assert!(peak < 2 * settled, "peak {peak} vs {settled}");
        for k in &live {
            assert_eq!(ix.remove(k), Some(slot(1)));
        }
        assert_eq!(ix.check(), Ok(()));
        assert!(ix.is_empty());
        assert!(
            ix.heap_bytes() < 256,
            "empty index holds {} B",
            ix.heap_bytes()
        );
    }

    /// The memory target: at most 48 heap bytes per item plus the key bytes.
    #[test]
    fn memory_per_item() {
        let mut rng = Rng::new(3);
        let mut ix = Index::new();
        let mut key_bytes = 0;
        for i in 0..BIG_N {
            let k = rng.key(20 + i % 9);
            key_bytes += k.len();
            ix.insert(&k, slot(i as u32));
        }
        let n = ix.len();
        let per_item = ix.heap_bytes() as f64 / n as f64;
        let avg_key = key_bytes as f64 / n as f64;
        println!(
            "index memory: {n} keys (avg {avg_key:.1} B): {:.1} B per item = {avg_key:.1} key \
             + {:.1} structure ({} buckets)",
            per_item,
            per_item - avg_key,
            ix.buckets.len()
        );
        assert!(per_item <= 48.0 + avg_key, "{per_item:.1} B per item");
    }

    /// A million keys in one partition (random order): no O(n) insert, no split blow-up.
    #[test]
    fn one_huge_partition() {
        let mut rng = Rng::new(5);
        let mut ix = Index::new();
        let t = Instant::now();
        for i in 0..BIG_N {
            let sk = rng.next().to_be_bytes();
            ix.insert(&key(0xDEAD_BEEF, &sk), slot(i as u32));
        }
        let elapsed = t.elapsed();
        println!("one partition: {BIG_N} random inserts in {elapsed:?}");
        assert_eq!(ix.len(), BIG_N);
        assert_eq!(ix.check(), Ok(()));
        assert!(elapsed.as_secs() < 20, "{elapsed:?}");
        let per_item = ix.heap_bytes() as f64 / BIG_N as f64;
        println!("one partition: {per_item:.1} B per item (16-byte keys)");
        assert!(per_item <= 48.0 + 16.0);
    }

    /// Timings (release: `cargo test -p tern-storage --release index::tests::timings
    /// -- --ignored --nocapture`).
    #[test]
    #[ignore = "timing, run by hand in release mode"]
    fn timings() {
        const N: usize = 1_000_000;
        let mut rng = Rng::new(11);
        let keys: Vec<Vec<u8>> = (0..N).map(|_| rng.key(24)).collect();
        let mut ix = Index::new();
        let t = Instant::now();
        let mut slowest = std::time::Duration::ZERO;
        for (i, k) in keys.iter().enumerate() {
            let t = Instant::now();
            ix.insert(k, slot(i as u32));
            slowest = slowest.max(t.elapsed());
        }
        let insert = t.elapsed().as_nanos() as f64 / N as f64;
        let mut probes = keys.clone();
        rng.shuffle(&mut probes);
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..3 {
            for k in &probes {
                found += black_box(ix.get(black_box(k))).is_some() as usize;
            }
        }
        let get = t.elapsed().as_nanos() as f64 / (3 * N) as f64;
        assert_eq!(found, 3 * N);
        let misses: Vec<Vec<u8>> = (0..N).map(|_| rng.key(24)).collect();
        let t = Instant::now();
        for k in &misses {
            black_box(ix.get(black_box(k)));
        }
        let miss = t.elapsed().as_nanos() as f64 / N as f64;
        let t = Instant::now();
        let mut scanned = 0;
        for k in probes.iter().take(100_000) {
            scanned += ix
                .range(Bound::Included(k.as_slice()), Bound::Unbounded)
                .take(100)
                .count();
        }
        let range = t.elapsed().as_nanos() as f64 / 100_000.0;
        black_box(scanned);
        let t = Instant::now();
        let mut removed = 0;
        for k in probes.iter().take(N / 2) {
            removed += ix.remove(k).is_some() as usize;
        }
        let remove = t.elapsed().as_nanos() as f64 / (N / 2) as f64;
        assert_eq!(removed, N / 2);

        let mut one = Index::new();
        let t = Instant::now();
        for i in 0..N {
            one.insert(&key(0xDEAD_BEEF, &rng.next().to_be_bytes()), slot(i as u32));
        }
        let one_partition = t.elapsed();
        let t = Instant::now();
        let mut hits = 0;
        let sample: Vec<Vec<u8>> = one
            .range(Bound::Unbounded, Bound::Unbounded)
            .step_by(10)
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in &sample {
            hits += one.get(k).is_some() as usize;
        }
        let one_get = t.elapsed().as_nanos() as f64 / sample.len() as f64;
        assert_eq!(hits, sample.len());
        println!(
            "index timings, {N} random 24-byte keys: insert {insert:.0} ns/op, get hit \
             {get:.0} ns/op (slowest insert, a bucket doubling: {slowest:?}), get miss {miss:.0} ns/op, range 100 from random start \
             {range:.0} ns/op, remove {remove:.0} ns/op; one partition: {N} random inserts \
             in {one_partition:?}, get {one_get:.0} ns/op"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, u32),
        Remove(Vec<u8>),
        /// Relocate to `.2`, expecting the current location if `.1`, a wrong one if not.
        Relocate(Vec<u8>, bool, u32),
        Get(Vec<u8>),
    }

    /// Prefixes that share top bits, differ only in the low bit, sit at the extremes.
    const PREFIXES: [u64; 6] = [
        0,
        1,
        0x0100_0000_0000_0000,
        0x7FFF_FFFF_FFFF_FFFF,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];

    /// Keys from few prefixes with short suffixes: collisions and multi-key partitions.
    fn few_prefix_key() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(&PREFIXES[..]),
            proptest::collection::vec(0u8..3, 0..4),
        )
            .prop_map(|(p, rest)| key(p, &rest))
    }

    /// Keys from many prefixes, so that buckets split.
    fn many_prefix_key() -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), proptest::collection::vec(0u8..2, 0..2)).prop_map(|(p, r)| key(p, &r))
    }

    fn bound_bytes(keys: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            Just(0u8),
            Just(1),
            Just(0x7F),
            Just(0x80),
            Just(0xFF),
            any::<u8>()
        ];
        prop_oneof![keys, proptest::collection::vec(byte, 0..11)]
    }

    fn bound(keys: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            1 => Just(Bound::Unbounded),
            3 => bound_bytes(keys.clone()).prop_map(Bound::Included),
            3 => bound_bytes(keys).prop_map(Bound::Excluded),
        ]
    }

    fn ops(
        keys: BoxedStrategy<Vec<u8>>,
        n: std::ops::Range<usize>,
    ) -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (keys.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => keys.clone().prop_map(Op::Remove),
            1 => (keys.clone(), any::<bool>(), any::<u32>()).prop_map(|(k, c, v)| Op::Relocate(k, c, v)),
            1 => keys.prop_map(Op::Get),
        ];
        proptest::collection::vec(op, n)
    }

    type Ranges = Vec<(Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>)>;

    fn ranges(keys: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Ranges> {
        proptest::collection::vec(
            (
                bound(keys.clone()),
                bound(keys),
                proptest::collection::vec(any::<bool>(), 0..40),
            ),
            1..6,
        )
    }

    /// Runs `ops` on an index with `limits` and on a `BTreeMap`, comparing every answer,
    /// then every range: forward, reverse, and consumed from both ends as `ends` says.
    fn matches_model(limits: Limits, ops: &[Op], ranges: &Ranges) -> Result<(), TestCaseError> {
        let mut ix = Index::with_limits(limits);
        let mut model: BTreeMap<Vec<u8>, Slot> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    prop_assert_eq!(ix.insert(k, slot(*v)), model.insert(k.clone(), slot(*v)))
                }
                Op::Remove(k) => prop_assert_eq!(ix.remove(k), model.remove(k)),
                Op::Relocate(k, current, v) => {
                    let expected = match model.get(k) {
                        Some(s) if *current => s.loc,
                        _ => slot(v.wrapping_add(1)).loc,
                    };
                    let new = slot(*v).loc;
                    let want = match model.get_mut(k) {
                        Some(s) if s.loc == expected => {
                            s.loc = new;
                            true
                        }
                        _ => false,
                    };
                    prop_assert_eq!(ix.relocate(k, expected, new), want);
                }
                Op::Get(k) => prop_assert_eq!(ix.get(k), model.get(k).copied()),
            }
        }
        prop_assert_eq!(ix.check(), Ok(()));
        prop_assert_eq!(ix.len(), model.len());
        prop_assert_eq!(
            ix.size_bytes(),
            model.values().map(|s| s.size_bytes as u64).sum::<u64>()
        );
        for (k, s) in &model {
            prop_assert_eq!(ix.get(k), Some(*s));
        }
        for (lo, hi, ends) in ranges {
            let (lo, hi) = (
                lo.as_ref().map(Vec::as_slice),
                hi.as_ref().map(Vec::as_slice),
            );
            let want: Vec<(&[u8], Slot)> = model
                .iter()
                .filter(|(k, _)| (lo, hi).contains(k.as_slice()))
                .map(|(k, s)| (k.as_slice(), *s))
                .collect();
            let got: Vec<(&[u8], Slot)> = ix.range(lo, hi).collect();
            prop_assert_eq!(&got, &want, "range {:?}..{:?}", lo, hi);
            let got_rev: Vec<(&[u8], Slot)> = ix.range(lo, hi).rev().collect();
            prop_assert!(
                got_rev.iter().rev().eq(want.iter()),
                "reverse {:?}..{:?}",
                lo,
                hi
            );
            // From both ends: `true` takes from the back.
            let mut it = ix.range(lo, hi);
            let (mut front, mut back) = (0, want.len());
            for &from_back in ends
                .iter()
                .chain(std::iter::repeat_n(&false, want.len() + 1))
            {
                let expected = if front == back {
                    None
                } else if from_back {
                    back -= 1;
                    Some(want[back])
                } else {
                    front += 1;
                    Some(want[front - 1])
                };
                prop_assert_eq!(if from_back { it.next_back() } else { it.next() }, expected);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn few_partitions_match_a_btreemap(
            ops in ops(few_prefix_key().boxed(), 0..300),
            ranges in ranges(few_prefix_key().boxed()),
        ) {
            matches_model(TINY, &ops, &ranges)?;
            matches_model(Limits::DEFAULT, &ops, &ranges)?;
        }

        #[test]
        fn mixed_partitions_match_a_btreemap(
            ops in ops(prop_oneof![few_prefix_key(), many_prefix_key()].boxed(), 0..300),
            ranges in ranges(prop_oneof![few_prefix_key(), many_prefix_key()].boxed()),
        ) {
            matches_model(TINY, &ops, &ranges)?;
            matches_model(Limits::DEFAULT, &ops, &ranges)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Thousands of operations: default-size buckets split and go big too.
        #[test]
        fn long_runs_match_a_btreemap(
            ops in ops(prop_oneof![few_prefix_key(), many_prefix_key()].boxed(), 1000..4000),
            ranges in ranges(prop_oneof![few_prefix_key(), many_prefix_key()].boxed()),
        ) {
            matches_model(TINY, &ops, &ranges)?;
            matches_model(Limits::DEFAULT, &ops, &ranges)?;
        }
    }
}
