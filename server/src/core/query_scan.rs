//! Query (one partition, on its owner) and Scan (coordinated across shards).

use std::ops::Bound;
use std::rc::Rc;

use tern_protocol::frame::Opcode;
use tern_protocol::keys::{
    condition_operand, encode_index_key, key_item, partition_hash, partition_hash_range,
    partition_of, partition_prefix, sort_key_range,
};
use tern_protocol::limits::PARTITION_COUNT;
use tern_protocol::messages::*;
use tern_protocol::requests::check_scan_segments;
use tern_protocol::validate::{check_key_bytes, page_limit, validate_key};
use tern_protocol::value::access_item;
use tern_protocol::{ApiError, KeySchema};
use tern_storage::store::{ItemRef, LogPos, StoreError};

use super::{Core, OpResult, Outcome};
use crate::mesh::{Answer, Call, ScanChunk, ScanRange};
use crate::page::PageBudget;
use crate::reply;
use crate::shard::store_error;

impl Core {
    pub(super) fn query(
        self: &Rc<Self>,
        id: u64,
        body: &[u8],
        forwarded: bool,
        out: &mut Vec<u8>,
    ) -> OpResult {
        let req = access::<ArchivedQueryRequest>(body)?;
        let table = req.table.as_str();
        let shard = self.shard.borrow();
        let t = shard.table(table)?;
        let schema = &t.schema;
        let limit = page_limit(req.limit.as_ref().map(|l| l.to_native()))?;
        let pk = condition_operand(&schema.partition, &req.partition_key)?;
        let hash = partition_hash(table, pk);
        if let Some(owner) = self.route(hash, forwarded)? {
            return Ok(Outcome::Forward(owner));
        }
        if self.needs_barrier(req.consistent_read) {
            return Ok(self.after_barrier(Opcode::Query, id, body));
        }
        shard.usable()?;
        // The whole request body is the cache key (ConsistentRead reads bypass it).
        let cached = !req.consistent_read;
        if cached && let Some((body, wait)) = self.cache.borrow_mut().get_page(t.id, body) {
            let start = out.len();
            reply::ok(out, Opcode::Query, id, body);
            let wait = shard.store.until_durable(wait);
            return Ok(self.when_durable(start, wait));
        }
        let mut prefix = Vec::new();
        partition_prefix(hash, pk, &mut prefix);
        let (mut lower, mut upper) =
            sort_key_range(&prefix, schema.sort.as_ref(), req.sort_key.as_ref())?;
        if let Some(esk) = req.exclusive_start_key.as_ref() {
            check_key_bytes(esk.len())?;
            let start = access_item(esk.as_slice())?;
            let (spk, ssk) = validate_key(start, schema)?;
            if spk != pk {
                return Err(ApiError::validation(
                    "The provided starting key is invalid: its partition key does not match the query's",
                )
                .into());
            }
            let mut start_key = Vec::new();
            encode_index_key(hash, spk, ssk, &mut start_key);
            if req.scan_forward {
                lower = tighter_lower(lower, start_key);
            } else {
                upper = tighter_upper(upper, start_key);
            }
        }
        let range = shard
            .store
            .range(t.id, as_ref_bound(&lower), as_ref_bound(&upper))
            .map_err(|e| store_error(shard.id, e))?;
        let mut page = PageResponse::default();
        let mut budget = PageBudget::page(limit);
        let mut last: Option<&[u8]> = None;
        let mut last_key: Option<&[u8]> = None;
        let mut max_end = LogPos::default();
        let mut iter: Box<dyn Iterator<Item = Result<ItemRef<'_>, StoreError>>> =
            if req.scan_forward {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
        let mut more = false;
        for item in iter.by_ref() {
            let item = item.map_err(|e| store_error(shard.id, e))?;
            if !budget.admits(item.bytes.len()) {
                more = true;
                break;
            }
            budget.take(item.size_bytes as usize, item.bytes.len());
            max_end = max_end.max(item.end);
            page.items.push(item.bytes.to_vec());
            last = Some(item.bytes);
            last_key = Some(item.key);
        }
        page.count = page.items.len() as u32;
        page.scanned_count = page.count;
        if let (true, Some(last)) = (more, last) {
            page.last_evaluated_key = Some(stored_key(schema, last)?);
        }
        let last_key: Option<Vec<u8>> = last_key.filter(|_| more).map(<[u8]>::to_vec);
        drop(iter);
        let start = out.len();
        let encoded = encode(&page);
        reply::ok(out, Opcode::Query, id, &encoded);
        let wait = shard.store.range_wait(t.id, max_end);
        if cached {
            // The page depends on the keys it read up to its last item when it stopped
            // early, on the whole condition's range otherwise (an insert anywhere in it
            // would change the page or its LastEvaluatedKey).
            let (mut lower, mut upper) = (lower, upper);
            if let Some(k) = last_key {
                if req.scan_forward {
                    upper = Bound::Included(k);
                } else {
                    lower = Bound::Included(k);
                }
            }
            self.cache.borrow_mut().fill_page(
                t.id,
                body,
                &prefix,
                (lower, upper),
                encoded,
                wait.unwrap_or_default(),
            );
        }
        Ok(self.when_durable(start, wait))
    }

    pub(super) fn scan(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<ScanRequest>(body)?;
        let schema = self.shard.borrow().table(&req.table)?.schema.clone();
        // Checked here, not in the coordinating task: a blob that is not an item archive
        // is a malformed body, which closes the connection as it does for every request.
        if let Some(esk) = &req.exclusive_start_key {
            check_key_bytes(esk.len())?;
            access_item(esk)?;
        }
        let core = self.clone();
        Ok(Outcome::Later(Box::pin(async move {
            let result = core.scan_coordinated(req, schema).await;
            reply::frame_to_vec(Opcode::Scan, id, result.map(|p| encode(&p)))
        })))
    }

    /// Walks the segment's hash range in order, one run of same-owner partitions at a time.
    pub(super) async fn scan_coordinated(
        &self,
        req: ScanRequest,
        schema: KeySchema,
    ) -> Result<PageResponse, ApiError> {
        check_scan_segments(req.segment, req.total_segments)?;
        let limit = page_limit(req.limit)?;
        let (seg_lo, seg_hi) = segment_range(req.segment, req.total_segments);
        let mut lower = Bound::Included(seg_lo.to_be_bytes().to_vec());
        let mut pos = seg_lo;
        if let Some(esk) = &req.exclusive_start_key {
            let start = access_item(esk)
                .map_err(|e| ApiError::internal(format!("a start key checked on arrival: {e}")))?;
            let (pk, sk) = validate_key(start, &schema)?;
            let hash = partition_hash(&req.table, pk);
            if hash < seg_lo || hash > seg_hi {
                return Err(ApiError::validation(
                    "The provided starting key is invalid: it does not belong to this Segment",
                ));
            }
            let mut key = Vec::new();
            encode_index_key(hash, pk, sk, &mut key);
            lower = Bound::Excluded(key);
            pos = hash;
        }
        let mut page = PageResponse::default();
        let mut budget = PageBudget::page(limit);
        loop {
            let first = partition_of(pos);
            let owner = self.topology.partition_map[first as usize];
            let mut last = first;
            while last + 1 < PARTITION_COUNT
                && self.topology.partition_map[(last + 1) as usize] == owner
                && partition_hash_range(last + 1).0 <= seg_hi
            {
                last += 1;
            }
            let run_hi = partition_hash_range(last).1.min(seg_hi);
            let upper = match run_hi.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            let range = ScanRange {
                table: req.table.clone(),
                lower,
                upper,
                budget,
                consistent: req.consistent_read,
            };
            let chunk = if self.is_me(owner) {
                self.scan_local_durable(&range).await?
            } else {
                match self.mesh.call(owner, Call::ScanRange(range)).await? {
                    Answer::Scan(r) => r?,
                    other => {
                        return Err(ApiError::internal(format!("unexpected answer {other:?}")));
                    }
                }
            };
            let exhausted = chunk.exhausted;
            budget = chunk.left;
            page.items
                .extend(chunk.items.into_iter().map(|(_, item)| item));
            let segment_done = run_hi >= seg_hi;
            if !exhausted || (budget.exhausted() && !segment_done) {
                if let Some(last) = page.items.last() {
                    page.last_evaluated_key = Some(stored_key(&schema, last)?);
                }
                break;
            }
            if segment_done {
                break;
            }
            pos = run_hi + 1;
            lower = Bound::Included(pos.to_be_bytes().to_vec());
        }
        page.count = page.items.len() as u32;
        page.scanned_count = page.count;
        Ok(page)
    }

    /// One Scan step over this shard's slice, answered once what it read is durable.
    pub(super) async fn scan_local_durable(
        &self,
        range: &ScanRange,
    ) -> Result<ScanChunk, ApiError> {
        if range.consistent {
            self.read_barrier().await?;
        }
        let (chunk, wait) = self.scan_local(range)?;
        if let Some(pos) = wait {
            self.durable(pos).await?;
        }
        Ok(chunk)
    }

    /// One Scan step over this shard's slice, and the position it must wait for.
    pub(super) fn scan_local(
        &self,
        range: &ScanRange,
    ) -> Result<(ScanChunk, Option<LogPos>), ApiError> {
        let shard = self.shard.borrow();
        let t = shard.table(&range.table)?;
        shard.usable()?;
        if !range.consistent
            && let Some((chunk, wait)) = self.cache.borrow_mut().get_chunk(t.id, range)
        {
            return Ok((chunk, shard.store.until_durable(wait)));
        }
        let mut chunk = ScanChunk {
            items: Vec::new(),
            left: range.budget,
            exhausted: true,
        };
        let mut max_end = LogPos::default();
        let items = shard
            .store
            .range(t.id, as_ref_bound(&range.lower), as_ref_bound(&range.upper))
            .map_err(|e| store_error(shard.id, e))?;
        for item in items {
            let item = item.map_err(|e| store_error(shard.id, e))?;
            if !chunk.left.admits(item.bytes.len()) {
                chunk.exhausted = false;
                break;
            }
            chunk.left.take(item.size_bytes as usize, item.bytes.len());
            max_end = max_end.max(item.end);
            chunk.items.push((item.key.to_vec(), item.bytes.to_vec()));
        }
        let wait = shard.store.range_wait(t.id, max_end);
        if !range.consistent {
            self.cache
                .borrow_mut()
                .fill_chunk(t.id, range, &chunk, wait.unwrap_or_default());
        }
        Ok((chunk, wait))
    }
}

/// The key of a stored item, encoded (a LastEvaluatedKey). Stored items passed
/// validation, so failing here means the log holds something it should not.
fn stored_key(schema: &KeySchema, item: &[u8]) -> Result<Vec<u8>, ApiError> {
    let item = access_item(item)
        .map_err(|e| ApiError::internal(format!("a stored item does not decode: {e}")))?;
    Ok(key_item(schema, item)?.encode())
}

/// Inclusive hash bounds of parallel-scan segment `segment` of `total`.
pub fn segment_range(segment: u32, total: u32) -> (u64, u64) {
    assert!(segment < total);
    let span = 1u128 << 64;
    let lo = (segment as u128 * span / total as u128) as u64;
    let hi = ((segment as u128 + 1) * span / total as u128 - 1) as u64;
    (lo, hi)
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The tighter of a lower bound and "strictly after `key`".
fn tighter_lower(lower: Bound<Vec<u8>>, key: Vec<u8>) -> Bound<Vec<u8>> {
    match &lower {
        Bound::Included(l) | Bound::Excluded(l) if *l > key => lower,
        _ => Bound::Excluded(key),
    }
}

/// The tighter of an upper bound and "strictly before `key`".
fn tighter_upper(upper: Bound<Vec<u8>>, key: Vec<u8>) -> Bound<Vec<u8>> {
    match &upper {
        Bound::Included(u) | Bound::Excluded(u) if *u < key => upper,
        _ => Bound::Excluded(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn segments_tile_the_hash_space() {
        for total in [1u32, 2, 3, 7, 1000] {
            let mut next = 0u64;
            for s in 0..total {
                let (lo, hi) = segment_range(s, total);
                assert_eq!(lo, next);
                assert!(hi >= lo);
                next = hi.wrapping_add(1);
            }
            assert_eq!(segment_range(total - 1, total).1, u64::MAX);
        }
    }

    #[test]
    pub(super) fn start_key_bounds_tighten_only() {
        let k = |b: &[u8]| b.to_vec();
        assert_eq!(
            tighter_lower(Bound::Included(k(b"b")), k(b"c")),
            Bound::Excluded(k(b"c"))
        );
        assert_eq!(
            tighter_lower(Bound::Included(k(b"d")), k(b"c")),
            Bound::Included(k(b"d"))
        );
        assert_eq!(
            tighter_upper(Bound::Excluded(k(b"z")), k(b"c")),
            Bound::Excluded(k(b"c"))
        );
        assert_eq!(
            tighter_upper(Bound::Excluded(k(b"a")), k(b"c")),
            Bound::Excluded(k(b"a"))
        );
        assert_eq!(
            tighter_upper(Bound::Unbounded, k(b"c")),
            Bound::Excluded(k(b"c"))
        );
    }
}
