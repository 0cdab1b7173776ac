//! Appending: records into pending chunks, and the index and catalog updated in log order.

use super::*;

impl<D: Disk + Clone> Store<D> {
    // ---------------------------------------------------------------------------------
    // Appending

    /// `Ok` unless the store failed (a poisoning fsync error) or found corruption: then
    /// it serves nothing, and callers answering from elsewhere (a cache) must not either.
    pub fn check_usable(&self) -> Result<(), StoreError> {
        match &self.failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Starts segment `active + 1`: its header is the first bytes of its first chunk.
    pub(super) fn roll(&mut self) {
        let id = self.active + 1;
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        SegmentHeader {
            segment_id: id,
            segment_size: self.cfg.segment_size,
            first_index: self.next_index,
            next_table_id: self.next_table_id,
            last_entry: self.raft.as_ref().map_or(0, |r| r.last()),
            last_entry_term: self.raft.as_ref().map_or(0, |r| r.last_term()),
        }
        .encode(&mut header);
        self.segments.insert(
            id,
            Segment {
                map: None,
                end: SEGMENT_HEADER_LEN as u32,
                live: 0,
                min_entry: u64::MAX,
            },
        );
        self.pending.push_back(Chunk {
            segment: id,
            start: 0,
            bytes: header,
            create: true,
        });
        self.active = id;
        self.stats.segments_created += 1;
    }

    /// The direct writes are a single-node store's; a replicated one appends entries and
    /// applies them when committed (`store::raft`).
    fn assert_single_node(&self) {
        assert!(
            self.raft.is_none(),
            "a replicated store takes writes as Raft entries"
        );
    }

    /// Appends one record (its `index` is assigned here) and returns where it went.
    pub(super) fn append(&mut self, mut r: Record<'_>, relocated: bool) -> Result<Loc, StoreError> {
        self.check_usable()?;
        if r.key.len() > KEY_MAX_BYTES {
            return Err(StoreError::KeyTooLong(r.key.len()));
        }
        let len = r.encoded_len();
        if len > self.record_max_len() {
            return Err(StoreError::TooLarge(len));
        }
        let end = self.segments[&self.active].end as u64;
        if end + len as u64 > self.cfg.segment_size {
            self.roll();
        }
        let segment = self.active;
        let offset = self.segments[&segment].end;
        let chunk = match self.pending.back_mut() {
            Some(c) if c.segment == segment && c.end() == LogPos::new(segment, offset) => c,
            _ => {
                self.pending.push_back(Chunk {
                    segment,
                    start: offset,
                    bytes: Vec::new(),
                    create: false,
                });
                self.pending.back_mut().expect("just pushed")
            }
        };
        r.index = self.next_index;
        // A Raft entry (and a relocated copy of any record) keeps the term it was
        // written with; a single-node store's own records carry the configured one.
        if self.raft.is_none() && !relocated {
            r.term = self.cfg.term;
        }
        if relocated {
            r.flags |= FLAG_RELOCATED;
        }
        encode_record(&r, &mut chunk.bytes);
        self.next_index += 1;
        let seg = self.segments.get_mut(&segment).expect("active exists");
        seg.end += len as u32;
        if r.entry != 0 {
            seg.min_entry = seg.min_entry.min(r.entry);
        }
        if relocated {
            self.stats.relocated_bytes += len as u64;
        } else {
            self.stats.client_bytes += len as u64;
        }
        Ok(Loc {
            segment,
            offset,
            len: len as u32,
        })
    }

    /// The largest record this log takes: `RECORD_MAX_BYTES`, or less when segments are
    /// configured smaller than one such record (tests).
    pub fn record_max_len(&self) -> usize {
        RECORD_MAX_BYTES.min(self.cfg.segment_size as usize - SEGMENT_HEADER_LEN)
    }

    pub(super) fn table_mut(&mut self, table: u32) -> Result<&mut TableData, StoreError> {
        self.tables
            .get_mut(&table)
            .ok_or(StoreError::NoTable(table))
    }

    /// Marks the record at `loc` dead (its index entry was replaced or removed).
    pub(super) fn release(&mut self, loc: Loc) {
        let seg = self
            .segments
            .get_mut(&loc.segment)
            .expect("index entries point into present segments");
        seg.live -= loc.len as u64;
    }

    /// Inserts or replaces an item. Returns where its record ends (wait for it to be
    /// durable before acknowledging) and the replaced item's slot, if any, whose bytes
    /// stay readable through [`Store::item_at`] until the next write.
    pub fn put(
        &mut self,
        table: u32,
        key: &[u8],
        item: &[u8],
        size_bytes: u32,
    ) -> Result<(LogPos, Option<Slot>), StoreError> {
        let (slot, old) = self.put_slot(table, key, item, size_bytes)?;
        Ok((LogPos::end_of(slot.loc), old))
    }

    /// Fails with `IndexFull` unless all of `keys` (distinct keys of one table) can be
    /// put together: a batch checks this before applying any of its writes, so it is
    /// refused whole rather than half applied.
    pub fn check_room<'k>(
        &self,
        table: u32,
        keys: impl IntoIterator<Item = &'k [u8]> + Clone,
    ) -> Result<(), StoreError> {
        let index = &self.table(table)?.index;
        if index.has_room_for_all(keys) {
            return Ok(());
        }
        Err(StoreError::IndexFull {
            table,
            key_bytes: index.key_bytes(),
            max: self.cfg.index_key_bytes_max.min(KEY_ARENA_LIVE_MAX_BYTES),
        })
    }

    /// Like [`Store::put`], returning the new record's slot (its end is
    /// `LogPos::end_of(slot.loc)`): what a cache keeps to find the item's bytes again.
    pub fn put_slot(
        &mut self,
        table: u32,
        key: &[u8],
        item: &[u8],
        size_bytes: u32,
    ) -> Result<(Slot, Option<Slot>), StoreError> {
        self.assert_single_node();
        // Refused before the record exists: after the append the write could not be
        // taken back, and the index must take the key.
        self.check_room(table, [key])?;
        let loc = self.append(
            Record::op(RecordKind::Put, table, size_bytes, key, item),
            false,
        )?;
        let old = self
            .table_mut(table)?
            .index
            .insert(key, Slot { loc, size_bytes });
        self.segments.get_mut(&loc.segment).expect("active").live += loc.len as u64;
        if let Some(old) = old {
            self.release(old.loc);
        }
        if !self.pending_deletes.is_empty() {
            self.pending_deletes.remove(&(table, Box::from(key)));
        }
        Ok((Slot { loc, size_bytes }, old))
    }

    /// Deletes an item. Returns the position to wait for (the tombstone's end, or an
    /// earlier delete's that is not durable yet) and the removed item's slot.
    pub fn delete(
        &mut self,
        table: u32,
        key: &[u8],
    ) -> Result<(Option<LogPos>, Option<Slot>), StoreError> {
        self.assert_single_node();
        self.check_usable()?;
        let Some(old) = self.table_mut(table)?.index.get(key) else {
            let earlier = self.pending_deletes.get(&(table, Box::from(key))).copied();
            return Ok((earlier.and_then(|p| self.until_durable(p)), None));
        };
        let loc = self.append(Record::op(RecordKind::Delete, table, 0, key, &[]), false)?;
        self.table_mut(table)?.index.remove(key);
        self.release(old.loc);
        let end = LogPos::end_of(loc);
        if self.cfg.durability == Durability::Sync {
            self.pending_deletes.insert((table, key.into()), end);
        }
        Ok((Some(end), Some(old)))
    }

    /// Creates a table; `desc.table_id` is assigned here. Returns the id and the
    /// position to wait for.
    pub fn create_table(&mut self, mut desc: TableDesc) -> Result<(u32, LogPos), StoreError> {
        self.assert_single_node();
        self.check_usable()?;
        if self.by_name.contains_key(&desc.name) {
            return Err(StoreError::TableExists(desc.name));
        }
        desc.table_id = self.next_table_id;
        let value = desc.encode();
        let loc = self.append(
            Record::op(RecordKind::CreateTable, desc.table_id, 0, &[], &value),
            false,
        )?;
        self.next_table_id += 1;
        let id = desc.table_id;
        self.insert_table(desc);
        Ok((id, LogPos::end_of(loc)))
    }

    /// Adds a table with an empty index to the catalog.
    pub(super) fn insert_table(&mut self, desc: TableDesc) {
        let id = desc.table_id;
        self.by_name.insert(desc.name.clone(), id);
        let mut index = Index::new();
        index.set_key_bytes_max(self.cfg.index_key_bytes_max);
        self.tables.insert(id, TableData { desc, index });
    }

    /// Deletes a table and all its items. Returns the position to wait for.
    pub fn delete_table(&mut self, table: u32) -> Result<LogPos, StoreError> {
        self.assert_single_node();
        self.table_mut(table)?;
        let loc = self.append(
            Record::op(RecordKind::DeleteTable, table, 0, &[], &[]),
            false,
        )?;
        self.remove_table(table, true);
        Ok(LogPos::end_of(loc))
    }

    /// Removes a table and (with `account`) releases its items' records.
    pub(super) fn remove_table(&mut self, table: u32, account: bool) {
        let t = self.tables.remove(&table).expect("the table exists");
        self.by_name.remove(&t.desc.name);
        for (_, slot) in t.index.range(Bound::Unbounded, Bound::Unbounded) {
            if !account {
                break;
            }
            self.segments
                .get_mut(&slot.loc.segment)
                .expect("present")
                .live -= slot.loc.len as u64;
        }
        self.pending_deletes.retain(|(t, _), _| *t != table);
    }
}
