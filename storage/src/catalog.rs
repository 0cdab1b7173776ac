//! The persisted table catalog: the codec for table descriptors.
//!
//! A shard persists each table's descriptor in its log (as a catalog record) and in index
//! checkpoints. The encoding is a flatbuffer whose schema, `storage/schema/catalog.fbs`,
//! is the source of truth: root table `tern.catalog.TableDescriptor`, file identifier
//! `"TCAT"`. The schema must be able to grow (secondary indexes, a TTL attribute, cache
//! TTLs, stream settings...) while every record ever written stays readable, so it
//! evolves only by these rules:
//!
//! * **append only**: a new field takes the next unused field id (`id:` in the schema) and
//!   a new vtable slot; old readers skip it, new readers see its default in old buffers;
//! * **never reuse, renumber or retype an id**, and never change a field's default: an
//!   id means one thing for ever;
//! * **deprecate, never delete**: a field no longer written is marked `(deprecated)` in the
//!   schema, which keeps its id taken;
//! * no new `required` fields (old buffers lack them) and no field turned `required`;
//!   enums only gain values, and a reader rejects a value it does not know.
//!
//! [`TableDesc`] is the plain Rust form (storage does not depend on `tern-protocol`);
//! [`TableDesc::encode`] and [`TableDesc::decode`] convert it. Decoding verifies the whole
//! buffer first (offsets, string bounds and UTF-8, required fields) and then checks what the
//! verifier cannot: the file identifier, enum values and name lengths.

use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer};

/// The file identifier of an encoded [`TableDesc`] (bytes 4..8 of the buffer).
pub const TABLE_DESC_FILE_IDENTIFIER: &str = generated::TABLE_DESCRIPTOR_IDENTIFIER;

/// Longest table or key attribute name, in bytes (DynamoDB's limit for both).
pub const MAX_NAME_LEN: usize = 255;

/// The encoding of the fixed descriptor below, pinned so that any change of the encoding
/// (schema, builder order, flatbuffers version) is noticed: such a change must be
/// deliberate, because the bytes live in logs and checkpoints.
///
/// ```
/// use tern_storage::catalog::{GOLDEN_TABLE_DESC_HEX, KeyAttrDesc, KeyType, TableDesc};
///
/// let desc = TableDesc {
///     table_id: 7,
///     name: "Music".into(),
///     partition_key: KeyAttrDesc { name: "Artist".into(), ty: KeyType::S },
///     sort_key: Some(KeyAttrDesc { name: "SongTitle".into(), ty: KeyType::S }),
///     creation_time_ms: 1_764_000_000_000,
/// };
/// let bytes = desc.encode();
/// let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
/// assert_eq!(hex, GOLDEN_TABLE_DESC_HEX);
/// assert_eq!(TableDesc::decode(&bytes).unwrap(), desc);
/// ```
pub const GOLDEN_TABLE_DESC_HEX: &str = concat!(
    "1c000000544341540000000000000e00",
    "2000040008000c00100014000e000000",
    "07000000480000003000000010000000",
    "00e897b69a01000000000000eaffffff",
    "0400000009000000536f6e675469746c",
    "65000600080004000600000004000000",
    "06000000417274697374000005000000",
    "4d75736963000000",
);

/// The type of a key attribute (DynamoDB's `ScalarAttributeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    S,
    N,
    B,
}

impl KeyType {
    fn to_fb(self) -> generated::ScalarType {
        match self {
            KeyType::S => generated::ScalarType::S,
            KeyType::N => generated::ScalarType::N,
            KeyType::B => generated::ScalarType::B,
        }
    }

    fn from_fb(t: generated::ScalarType) -> Option<KeyType> {
        match t {
            generated::ScalarType::S => Some(KeyType::S),
            generated::ScalarType::N => Some(KeyType::N),
            generated::ScalarType::B => Some(KeyType::B),
            _ => None,
        }
    }
}

/// A key attribute: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttrDesc {
    pub name: String,
    pub ty: KeyType,
}

/// A table descriptor, as the catalog persists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDesc {
    /// Shard-local id that log records use to name the table; never reused within a
    /// shard's log.
    pub table_id: u32,
    pub name: String,
    pub partition_key: KeyAttrDesc,
    pub sort_key: Option<KeyAttrDesc>,
    /// Milliseconds since the Unix epoch; 0 when unknown (records from before the field).
    pub creation_time_ms: u64,
}

/// Why bytes are not a catalog record this version can read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog record is {len} bytes, too short for a root offset and a file identifier")]
    TooShort { len: usize },
    #[error(
        "catalog record has file identifier \"{}\", expected \"{TABLE_DESC_FILE_IDENTIFIER}\"",
        .found.escape_ascii()
    )]
    WrongIdentifier { found: [u8; 4] },
    /// Verification failed: an offset or length out of bounds, bad UTF-8, a missing
    /// required field...
    #[error("catalog record is not a valid TableDescriptor flatbuffer: {}", .0.to_string().trim_end())]
    Invalid(InvalidFlatbuffer),
    #[error("{field}: unknown ScalarType value {value}")]
    UnknownKeyType { field: &'static str, value: u8 },
    #[error("{field} is empty")]
    EmptyName { field: &'static str },
    #[error("{field} is {len} bytes long, more than {max}", max = MAX_NAME_LEN)]
    NameTooLong { field: &'static str, len: usize },
}

fn check_name(field: &'static str, name: &str) -> Result<(), CatalogError> {
    if name.is_empty() {
        Err(CatalogError::EmptyName { field })
    } else if name.len() > MAX_NAME_LEN {
        Err(CatalogError::NameTooLong {
            field,
            len: name.len(),
        })
    } else {
        Ok(())
    }
}

impl TableDesc {
    /// The checks [`TableDesc::decode`] applies beyond flatbuffers verification: table and
    /// key attribute names are 1 to [`MAX_NAME_LEN`] bytes. (DynamoDB's naming rules
    /// proper are the protocol layer's business.)
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_name("name", &self.name)?;
        check_name("partition_key.name", &self.partition_key.name)?;
        if let Some(sk) = &self.sort_key {
            check_name("sort_key.name", &sk.name)?;
        }
        Ok(())
    }

    /// The flatbuffer for this descriptor, with file identifier `"TCAT"`.
    ///
    /// The descriptor must pass [`TableDesc::validate`] (checked in debug builds only):
    /// anything else would be written fine but rejected by [`TableDesc::decode`].
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.validate().is_ok(), "{:?}", self.validate());
        use generated::{KeyAttr, KeyAttrArgs, TableDescriptor, TableDescriptorArgs};

        let names_len = self.name.len()
            + self.partition_key.name.len()
            + self.sort_key.as_ref().map_or(0, |sk| sk.name.len());
        let mut fbb = FlatBufferBuilder::with_capacity(96 + names_len);
        let name = fbb.create_string(&self.name);
        let pk_name = fbb.create_string(&self.partition_key.name);
        let partition_key = KeyAttr::create(
            &mut fbb,
            &KeyAttrArgs {
                name: Some(pk_name),
                type_: self.partition_key.ty.to_fb(),
            },
        );
        let sort_key = self.sort_key.as_ref().map(|sk| {
            let sk_name = fbb.create_string(&sk.name);
            KeyAttr::create(
                &mut fbb,
                &KeyAttrArgs {
                    name: Some(sk_name),
                    type_: sk.ty.to_fb(),
                },
            )
        });
        let root = TableDescriptor::create(
            &mut fbb,
            &TableDescriptorArgs {
                table_id: self.table_id,
                name: Some(name),
                partition_key: Some(partition_key),
                sort_key,
                creation_time_ms: self.creation_time_ms,
            },
        );
        generated::finish_table_descriptor_buffer(&mut fbb, root);
        fbb.finished_data().to_vec()
    }

    /// Reads a descriptor written by [`TableDesc::encode`] of this or any other version
    /// (fields added later are skipped, fields missing from older buffers take their
    /// defaults). Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<TableDesc, CatalogError> {
        const HEADER_LEN: usize = flatbuffers::SIZE_UOFFSET + flatbuffers::FILE_IDENTIFIER_LENGTH;
        let Some(found) = bytes.get(flatbuffers::SIZE_UOFFSET..HEADER_LEN) else {
            return Err(CatalogError::TooShort { len: bytes.len() });
        };
        // (buffer_has_identifier asserts the length checked just above.)
        if !generated::table_descriptor_buffer_has_identifier(bytes) {
            let mut id = [0u8; 4];
            id.copy_from_slice(found);
            return Err(CatalogError::WrongIdentifier { found: id });
        }
        let root = generated::root_as_table_descriptor(bytes).map_err(CatalogError::Invalid)?;

        let key_attr = |k: generated::KeyAttr<'_>, name_field, type_field| {
            let name = k.name();
            check_name(name_field, name)?;
            let t = k.type_();
            let ty = KeyType::from_fb(t).ok_or(CatalogError::UnknownKeyType {
                field: type_field,
                value: t.0,
            })?;
            Ok::<_, CatalogError>(KeyAttrDesc {
                name: name.to_owned(),
                ty,
            })
        };
        let name = root.name();
        check_name("name", name)?;
        let partition_key = key_attr(
            root.partition_key(),
            "partition_key.name",
            "partition_key.type",
        )?;
        let sort_key = match root.sort_key() {
            Some(sk) => Some(key_attr(sk, "sort_key.name", "sort_key.type")?),
            None => None,
        };
        Ok(TableDesc {
            table_id: root.table_id(),
            name: name.to_owned(),
            partition_key,
            sort_key,
            creation_time_ms: root.creation_time_ms(),
        })
    }
}

pub(crate) mod generated {
    //! Accessors and builders for `storage/schema/catalog.fbs`, written by hand in the shape
    //! `flatc --rust` (flatbuffers 25.12) generates, because flatc is not a build dependency.
    //!
    //! They mirror the schema exactly: one `VT_*` constant per field at slot `4 + 2 * id`,
    //! defaults as in the schema, `required` fields checked by both the `Verifiable` impls
    //! and the builders' `finish`, and `create` adding fields in flatc's order (largest
    //! scalars first, each size class in reverse field order). When the schema changes,
    //! change this module to match, then compare it with what flatc generates:
    //!
    //! ```text
    //! flatc --rust -o /tmp/catalog-gen storage/schema/catalog.fbs
    //! # compare /tmp/catalog-gen/catalog_generated.rs with this module, item by item
    //! ```
    //!
    //! Expected differences: flatc nests the items in `pub mod tern { pub mod catalog }`
    //! and also emits deprecated `ENUM_*_SCALAR_TYPE` constants and the size-prefixed,
    //! `_with_opts` and `_unchecked` root functions, which tern does not use.

    // The flatbuffers accessor pattern needs `unsafe`: `Follow::follow` and `Push::push` are
    // `unsafe fn`s, and `Table::new`, `Table::get`, `read_scalar_at` and `emplace_scalar`
    // are unsafe to call. Reading is sound because every buffer goes through
    // `flatbuffers::root` (`root_as_table_descriptor`), which runs the `Verifiable` impls
    // below over the whole buffer before any accessor runs; nothing here calls
    // `root_unchecked`. This is the only place in tern-storage allowed unsafe code.
    #![allow(unsafe_code)]
    // As in flatc's output: not every generated item is used.
    #![allow(dead_code)]

    use flatbuffers::{
        Allocator, EndianScalar, FlatBufferBuilder, Follow, ForwardsUOffset, InvalidFlatbuffer,
        Push, SimpleToVerifyInSlice, Table, TableUnfinishedWIPOffset, VOffsetT, Verifiable,
        Verifier, WIPOffset,
    };

    pub const TABLE_DESCRIPTOR_IDENTIFIER: &str = "TCAT";

    // enum ScalarType : ubyte { S = 0, N = 1, B = 2 }
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    #[repr(transparent)]
    pub struct ScalarType(pub u8);

    impl ScalarType {
        pub const S: Self = Self(0);
        pub const N: Self = Self(1);
        pub const B: Self = Self(2);

        pub const ENUM_MIN: u8 = 0;
        pub const ENUM_MAX: u8 = 2;
        pub const ENUM_VALUES: &'static [Self] = &[Self::S, Self::N, Self::B];

        /// Returns the variant's name or "" if unknown.
        pub fn variant_name(self) -> Option<&'static str> {
            match self {
                Self::S => Some("S"),
                Self::N => Some("N"),
                Self::B => Some("B"),
                _ => None,
            }
        }
    }

    impl core::fmt::Debug for ScalarType {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            if let Some(name) = self.variant_name() {
                f.write_str(name)
            } else {
                f.write_fmt(format_args!("<UNKNOWN {:?}>", self.0))
            }
        }
    }

    impl<'a> Follow<'a> for ScalarType {
        type Inner = Self;
        #[inline]
        unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
            let b = unsafe { flatbuffers::read_scalar_at::<u8>(buf, loc) };
            Self(b)
        }
    }

    impl Push for ScalarType {
        type Output = ScalarType;
        #[inline]
        unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
            unsafe { flatbuffers::emplace_scalar::<u8>(dst, self.0) };
        }
    }

    impl EndianScalar for ScalarType {
        type Scalar = u8;
        #[inline]
        fn to_little_endian(self) -> u8 {
            self.0.to_le()
        }
        #[inline]
        fn from_little_endian(v: u8) -> Self {
            Self(u8::from_le(v))
        }
    }

    impl Verifiable for ScalarType {
        #[inline]
        fn run_verifier(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer> {
            u8::run_verifier(v, pos)
        }
    }

    impl SimpleToVerifyInSlice for ScalarType {}

    // table KeyAttr { name: string (id: 0, required); type: ScalarType (id: 1); }
    pub enum KeyAttrOffset {}

    #[derive(Copy, Clone, PartialEq)]
    pub struct KeyAttr<'a> {
        pub _tab: Table<'a>,
    }

    impl<'a> Follow<'a> for KeyAttr<'a> {
        type Inner = KeyAttr<'a>;
        #[inline]
        unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
            Self {
                _tab: unsafe { Table::new(buf, loc) },
            }
        }
    }

    impl<'a> KeyAttr<'a> {
        pub const VT_NAME: VOffsetT = 4;
        pub const VT_TYPE_: VOffsetT = 6;

        /// # Safety
        ///
        /// `table` must be a verified `KeyAttr`.
        #[inline]
        pub unsafe fn init_from_table(table: Table<'a>) -> Self {
            KeyAttr { _tab: table }
        }

        pub fn create<'bldr: 'args, 'args: 'mut_bldr, 'mut_bldr, A: Allocator + 'bldr>(
            fbb: &'mut_bldr mut FlatBufferBuilder<'bldr, A>,
            args: &'args KeyAttrArgs<'args>,
        ) -> WIPOffset<KeyAttr<'bldr>> {
            let mut builder = KeyAttrBuilder::new(fbb);
            if let Some(x) = args.name {
                builder.add_name(x);
            }
            builder.add_type_(args.type_);
            builder.finish()
        }

        #[inline]
        pub fn name(&self) -> &'a str {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<ForwardsUOffset<&str>>(KeyAttr::VT_NAME, None)
                    .unwrap()
            }
        }

        #[inline]
        pub fn type_(&self) -> ScalarType {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<ScalarType>(KeyAttr::VT_TYPE_, Some(ScalarType::S))
                    .unwrap()
            }
        }
    }

    impl Verifiable for KeyAttr<'_> {
        #[inline]
        fn run_verifier(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<ForwardsUOffset<&str>>("name", Self::VT_NAME, true)?
                .visit_field::<ScalarType>("type_", Self::VT_TYPE_, false)?
                .finish();
            Ok(())
        }
    }

    #[derive(Default)]
    pub struct KeyAttrArgs<'a> {
        pub name: Option<WIPOffset<&'a str>>, // required field
        pub type_: ScalarType,
    }

    pub struct KeyAttrBuilder<'a, 'b, A: Allocator + 'a> {
        fbb_: &'b mut FlatBufferBuilder<'a, A>,
        start_: WIPOffset<TableUnfinishedWIPOffset>,
    }

    impl<'a: 'b, 'b, A: Allocator + 'a> KeyAttrBuilder<'a, 'b, A> {
        #[inline]
        pub fn add_name(&mut self, name: WIPOffset<&'b str>) {
            self.fbb_
                .push_slot_always::<WIPOffset<_>>(KeyAttr::VT_NAME, name);
        }

        #[inline]
        pub fn add_type_(&mut self, type_: ScalarType) {
            self.fbb_
                .push_slot::<ScalarType>(KeyAttr::VT_TYPE_, type_, ScalarType::S);
        }

        #[inline]
        pub fn new(fbb: &'b mut FlatBufferBuilder<'a, A>) -> KeyAttrBuilder<'a, 'b, A> {
            let start = fbb.start_table();
            KeyAttrBuilder {
                fbb_: fbb,
                start_: start,
            }
        }

        #[inline]
        pub fn finish(self) -> WIPOffset<KeyAttr<'a>> {
            let o = self.fbb_.end_table(self.start_);
            self.fbb_.required(o, KeyAttr::VT_NAME, "name");
            WIPOffset::new(o.value())
        }
    }

    impl core::fmt::Debug for KeyAttr<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("KeyAttr")
                .field("name", &self.name())
                .field("type_", &self.type_())
                .finish()
        }
    }

    // table TableDescriptor {
    //   table_id: uint (id: 0); name: string (id: 1, required);
    //   partition_key: KeyAttr (id: 2, required); sort_key: KeyAttr (id: 3);
    //   creation_time_ms: ulong (id: 4);
    // }
    pub enum TableDescriptorOffset {}

    #[derive(Copy, Clone, PartialEq)]
    pub struct TableDescriptor<'a> {
        pub _tab: Table<'a>,
    }

    impl<'a> Follow<'a> for TableDescriptor<'a> {
        type Inner = TableDescriptor<'a>;
        #[inline]
        unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
            Self {
                _tab: unsafe { Table::new(buf, loc) },
            }
        }
    }

    impl<'a> TableDescriptor<'a> {
        pub const VT_TABLE_ID: VOffsetT = 4;
        pub const VT_NAME: VOffsetT = 6;
        pub const VT_PARTITION_KEY: VOffsetT = 8;
        pub const VT_SORT_KEY: VOffsetT = 10;
        pub const VT_CREATION_TIME_MS: VOffsetT = 12;

        /// # Safety
        ///
        /// `table` must be a verified `TableDescriptor`.
        #[inline]
        pub unsafe fn init_from_table(table: Table<'a>) -> Self {
            TableDescriptor { _tab: table }
        }

        pub fn create<'bldr: 'args, 'args: 'mut_bldr, 'mut_bldr, A: Allocator + 'bldr>(
            fbb: &'mut_bldr mut FlatBufferBuilder<'bldr, A>,
            args: &'args TableDescriptorArgs<'args>,
        ) -> WIPOffset<TableDescriptor<'bldr>> {
            let mut builder = TableDescriptorBuilder::new(fbb);
            builder.add_creation_time_ms(args.creation_time_ms);
            if let Some(x) = args.sort_key {
                builder.add_sort_key(x);
            }
            if let Some(x) = args.partition_key {
                builder.add_partition_key(x);
            }
            if let Some(x) = args.name {
                builder.add_name(x);
            }
            builder.add_table_id(args.table_id);
            builder.finish()
        }

        #[inline]
        pub fn table_id(&self) -> u32 {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<u32>(TableDescriptor::VT_TABLE_ID, Some(0))
                    .unwrap()
            }
        }

        #[inline]
        pub fn name(&self) -> &'a str {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<ForwardsUOffset<&str>>(TableDescriptor::VT_NAME, None)
                    .unwrap()
            }
        }

        #[inline]
        pub fn partition_key(&self) -> KeyAttr<'a> {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<ForwardsUOffset<KeyAttr<'_>>>(TableDescriptor::VT_PARTITION_KEY, None)
                    .unwrap()
            }
        }

        #[inline]
        pub fn sort_key(&self) -> Option<KeyAttr<'a>> {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<ForwardsUOffset<KeyAttr<'_>>>(TableDescriptor::VT_SORT_KEY, None)
            }
        }

        #[inline]
        pub fn creation_time_ms(&self) -> u64 {
            // Safety:
            // Created from valid Table for this object
            // which contains a valid value in this slot
            unsafe {
                self._tab
                    .get::<u64>(TableDescriptor::VT_CREATION_TIME_MS, Some(0))
                    .unwrap()
            }
        }
    }

    impl Verifiable for TableDescriptor<'_> {
        #[inline]
        fn run_verifier(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<u32>("table_id", Self::VT_TABLE_ID, false)?
                .visit_field::<ForwardsUOffset<&str>>("name", Self::VT_NAME, true)?
                .visit_field::<ForwardsUOffset<KeyAttr<'_>>>(
                    "partition_key",
                    Self::VT_PARTITION_KEY,
                    true,
                )?
                .visit_field::<ForwardsUOffset<KeyAttr<'_>>>("sort_key", Self::VT_SORT_KEY, false)?
                .visit_field::<u64>("creation_time_ms", Self::VT_CREATION_TIME_MS, false)?
                .finish();
            Ok(())
        }
    }

    #[derive(Default)]
    pub struct TableDescriptorArgs<'a> {
        pub table_id: u32,
        pub name: Option<WIPOffset<&'a str>>, // required field
        pub partition_key: Option<WIPOffset<KeyAttr<'a>>>, // required field
        pub sort_key: Option<WIPOffset<KeyAttr<'a>>>,
        pub creation_time_ms: u64,
    }

    pub struct TableDescriptorBuilder<'a, 'b, A: Allocator + 'a> {
        fbb_: &'b mut FlatBufferBuilder<'a, A>,
        start_: WIPOffset<TableUnfinishedWIPOffset>,
    }

    impl<'a: 'b, 'b, A: Allocator + 'a> TableDescriptorBuilder<'a, 'b, A> {
        #[inline]
        pub fn add_table_id(&mut self, table_id: u32) {
            self.fbb_
                .push_slot::<u32>(TableDescriptor::VT_TABLE_ID, table_id, 0);
        }

        #[inline]
        pub fn add_name(&mut self, name: WIPOffset<&'b str>) {
            self.fbb_
                .push_slot_always::<WIPOffset<_>>(TableDescriptor::VT_NAME, name);
        }

        #[inline]
        pub fn add_partition_key(&mut self, partition_key: WIPOffset<KeyAttr<'b>>) {
            self.fbb_.push_slot_always::<WIPOffset<KeyAttr<'_>>>(
                TableDescriptor::VT_PARTITION_KEY,
                partition_key,
            );
        }

        #[inline]
        pub fn add_sort_key(&mut self, sort_key: WIPOffset<KeyAttr<'b>>) {
            self.fbb_
                .push_slot_always::<WIPOffset<KeyAttr<'_>>>(TableDescriptor::VT_SORT_KEY, sort_key);
        }

        #[inline]
        pub fn add_creation_time_ms(&mut self, creation_time_ms: u64) {
            self.fbb_
                .push_slot::<u64>(TableDescriptor::VT_CREATION_TIME_MS, creation_time_ms, 0);
        }

        #[inline]
        pub fn new(fbb: &'b mut FlatBufferBuilder<'a, A>) -> TableDescriptorBuilder<'a, 'b, A> {
            let start = fbb.start_table();
            TableDescriptorBuilder {
                fbb_: fbb,
                start_: start,
            }
        }

        #[inline]
        pub fn finish(self) -> WIPOffset<TableDescriptor<'a>> {
            let o = self.fbb_.end_table(self.start_);
            self.fbb_.required(o, TableDescriptor::VT_NAME, "name");
            self.fbb_
                .required(o, TableDescriptor::VT_PARTITION_KEY, "partition_key");
            WIPOffset::new(o.value())
        }
    }

    impl core::fmt::Debug for TableDescriptor<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("TableDescriptor")
                .field("table_id", &self.table_id())
                .field("name", &self.name())
                .field("partition_key", &self.partition_key())
                .field("sort_key", &self.sort_key())
                .field("creation_time_ms", &self.creation_time_ms())
                .finish()
        }
    }

    /// Verifies that a buffer of bytes contains a `TableDescriptor` and returns it.
    /// Note that verification is still experimental and may not catch every error, or be
    /// maximally performant.
    #[inline]
    pub fn root_as_table_descriptor(buf: &[u8]) -> Result<TableDescriptor<'_>, InvalidFlatbuffer> {
        flatbuffers::root::<TableDescriptor<'_>>(buf)
    }

    /// Whether bytes 4..8 are `TABLE_DESCRIPTOR_IDENTIFIER`. Panics if `buf` is shorter
    /// than 8 bytes (flatbuffers' `buffer_has_identifier` asserts it).
    #[inline]
    pub fn table_descriptor_buffer_has_identifier(buf: &[u8]) -> bool {
        flatbuffers::buffer_has_identifier(buf, TABLE_DESCRIPTOR_IDENTIFIER, false)
    }

    #[inline]
    pub fn finish_table_descriptor_buffer<'a, A: Allocator + 'a>(
        fbb: &mut FlatBufferBuilder<'a, A>,
        root: WIPOffset<TableDescriptor<'a>>,
    ) {
        fbb.finish(root, Some(TABLE_DESCRIPTOR_IDENTIFIER));
    }
}

#[cfg(test)]
mod tests {
    use super::generated::{KeyAttr, ScalarType, TableDescriptor};
    use super::*;
    use flatbuffers::WIPOffset;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key(name: &str, ty: KeyType) -> KeyAttrDesc {
        KeyAttrDesc {
            name: name.into(),
            ty,
        }
    }

    fn golden_desc() -> TableDesc {
        TableDesc {
            table_id: 7,
            name: "Music".into(),
            partition_key: key("Artist", KeyType::S),
            sort_key: Some(key("SongTitle", KeyType::S)),
            creation_time_ms: 1_764_000_000_000,
        }
    }

    /// Length of the root table's vtable, read with plain slice indexing.
    fn root_vtable_len(buf: &[u8]) -> usize {
        let u32_at = |p: usize| u32::from_le_bytes(buf[p..p + 4].try_into().unwrap());
        let table = u32_at(0) as usize;
        let vtable = (table as i64 - i64::from(u32_at(table) as i32)) as usize;
        u16::from_le_bytes([buf[vtable], buf[vtable + 1]]) as usize
    }

    fn assert_round_trip(desc: &TableDesc) {
        let bytes = desc.encode();
        assert_eq!(&bytes[4..8], b"TCAT");
        assert_eq!(&TableDesc::decode(&bytes).unwrap(), desc);
    }

    #[test]
    fn catalog_round_trip_with_and_without_sort_key() {
        assert_round_trip(&golden_desc());
        assert_round_trip(&TableDesc {
            sort_key: None,
            ..golden_desc()
        });
        // All defaults: table_id 0 and creation_time_ms 0 are not even written.
        assert_round_trip(&TableDesc {
            table_id: 0,
            name: "t".into(),
            partition_key: key("pk", KeyType::B),
            sort_key: None,
            creation_time_ms: 0,
        });
        assert_round_trip(&TableDesc {
            table_id: u32::MAX,
            name: "x".repeat(MAX_NAME_LEN),
            partition_key: key(&"p".repeat(MAX_NAME_LEN), KeyType::N),
            sort_key: Some(key(&"s".repeat(MAX_NAME_LEN), KeyType::B)),
            creation_time_ms: u64::MAX,
        });
    }

    #[test]
    fn catalog_round_trip_unicode_names() {
        assert_round_trip(&TableDesc {
            table_id: 42,
            name: "Música 🎵 曲".into(),
            partition_key: key("Künstler", KeyType::S),
            sort_key: Some(key("曲名", KeyType::N)),
            creation_time_ms: 1,
        });
        // 255 bytes of 3-byte characters.
        assert_round_trip(&TableDesc {
            name: "曲".repeat(85),
            ..golden_desc()
        });
    }

    #[test]
    fn catalog_golden_hex() {
        let bytes = golden_desc().encode();
        assert_eq!(hex(&bytes), GOLDEN_TABLE_DESC_HEX, "encoding changed");
        let decoded: Vec<u8> = (0..GOLDEN_TABLE_DESC_HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN_TABLE_DESC_HEX[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(TableDesc::decode(&decoded).unwrap(), golden_desc());
    }

    #[test]
    fn catalog_rejects_garbage() {
        assert!(matches!(
            TableDesc::decode(&[]),
            Err(CatalogError::TooShort { len: 0 })
        ));
        assert!(matches!(
            TableDesc::decode(b"TCAT"),
            Err(CatalogError::TooShort { len: 4 })
        ));
        assert!(matches!(
            TableDesc::decode(&[0; 64]),
            Err(CatalogError::WrongIdentifier {
                found: [0, 0, 0, 0]
            })
        ));
        // The right identifier around nonsense offsets.
        for fill in [0x00u8, 0x01, 0x7f, 0x80, 0xff] {
            for len in [8, 9, 12, 16, 64, 300] {
                let mut buf = vec![fill; len];
                buf[4..8].copy_from_slice(b"TCAT");
                assert!(matches!(
                    TableDesc::decode(&buf),
                    Err(CatalogError::Invalid(_))
                ));
            }
        }
        // Pseudo-random bytes (xorshift), with and without the identifier.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000 {
            let mut buf: Vec<u8> = (0..(round % 200))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if round % 2 == 0 && buf.len() >= 8 {
                buf[4..8].copy_from_slice(b"TCAT");
            }
            let _ = TableDesc::decode(&buf);
        }
    }

    #[test]
    fn catalog_rejects_truncated_buffers() {
        for desc in [
            golden_desc(),
            TableDesc {
                sort_key: None,
                ..golden_desc()
            },
        ] {
            let bytes = desc.encode();
            for len in 0..bytes.len() {
                // Err, or (should a prefix happen to verify) anything but a panic. The
                // prefixes that do verify only lose the padding after the last string.
                if let Ok(d) = TableDesc::decode(&bytes[..len]) {
                    assert_eq!(d, desc, "prefix of {len} bytes");
                    assert!(
                        bytes[len..].iter().all(|&b| b == 0),
                        "prefix of {len} bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn catalog_rejects_wrong_file_identifier() {
        let mut bytes = golden_desc().encode();
        bytes[4..8].copy_from_slice(b"TCAX");
        let err = TableDesc::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, CatalogError::WrongIdentifier { found } if &found == b"TCAX"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "catalog record has file identifier \"TCAX\", expected \"TCAT\""
        );
    }

    /// A `TableDescriptor` written field by field, as another writer (older, newer or
    /// broken) might: `None` leaves a field out, names are raw bytes (any UTF-8 or not),
    /// and `ttl_attribute` is field id 5, which this version does not know.
    #[derive(Clone)]
    struct Raw {
        table_id: u32,
        name: Option<Vec<u8>>,
        partition_key: Option<(Option<Vec<u8>>, ScalarType)>,
        sort_key: Option<(Option<Vec<u8>>, ScalarType)>,
        creation_time_ms: Option<u64>,
        ttl_attribute: Option<Vec<u8>>,
    }

    impl Raw {
        /// `golden_desc()`, written by hand.
        fn golden() -> Raw {
            Raw {
                table_id: 7,
                name: Some(b"Music".to_vec()),
                partition_key: Some((Some(b"Artist".to_vec()), ScalarType::S)),
                sort_key: Some((Some(b"SongTitle".to_vec()), ScalarType::S)),
                creation_time_ms: Some(1_764_000_000_000),
                ttl_attribute: None,
            }
        }

        fn build(&self) -> Vec<u8> {
            fn key_attr<'f>(
                fbb: &mut FlatBufferBuilder<'f>,
                k: &Option<(Option<Vec<u8>>, ScalarType)>,
            ) -> Option<WIPOffset<KeyAttr<'f>>> {
                let (name, ty) = k.as_ref()?;
                let name = name.as_ref().map(|n| fbb.create_byte_string(n));
                let start = fbb.start_table();
                if let Some(n) = name {
                    fbb.push_slot_always(KeyAttr::VT_NAME, n);
                }
                fbb.push_slot(KeyAttr::VT_TYPE_, *ty, ScalarType::S);
                Some(WIPOffset::new(fbb.end_table(start).value()))
            }

            let mut fbb = FlatBufferBuilder::new();
            let ttl = self
                .ttl_attribute
                .as_ref()
                .map(|s| fbb.create_byte_string(s));
            let name = self.name.as_ref().map(|s| fbb.create_byte_string(s));
            let pk = key_attr(&mut fbb, &self.partition_key);
            let sk = key_attr(&mut fbb, &self.sort_key);
            let start = fbb.start_table();
            if let Some(ms) = self.creation_time_ms {
                fbb.push_slot_always(TableDescriptor::VT_CREATION_TIME_MS, ms);
            }
            if let Some(ttl) = ttl {
                fbb.push_slot_always(flatbuffers::field_index_to_field_offset(5), ttl);
            }
            if let Some(sk) = sk {
                fbb.push_slot_always(TableDescriptor::VT_SORT_KEY, sk);
            }
            if let Some(pk) = pk {
                fbb.push_slot_always(TableDescriptor::VT_PARTITION_KEY, pk);
            }
            if let Some(name) = name {
                fbb.push_slot_always(TableDescriptor::VT_NAME, name);
            }
            fbb.push_slot(TableDescriptor::VT_TABLE_ID, self.table_id, 0);
            let root = fbb.end_table(start);
            fbb.finish(root, Some(TABLE_DESC_FILE_IDENTIFIER));
            fbb.finished_data().to_vec()
        }
    }

    #[test]
    fn catalog_hand_built_buffer_matches_encoder() {
        let bytes = Raw::golden().build();
        assert_eq!(TableDesc::decode(&bytes).unwrap(), golden_desc());
        assert_eq!(root_vtable_len(&bytes), 4 + 2 * 5);
    }

    #[test]
    fn catalog_forward_compatible_unknown_field_is_skipped() {
        // A future writer adds `ttl_attribute: string (id: 5)`.
        let bytes = Raw {
            ttl_attribute: Some(b"ExpiresAt".to_vec()),
            ..Raw::golden()
        }
        .build();
        assert_eq!(
            root_vtable_len(&bytes),
            4 + 2 * 6,
            "slot 5 is in the vtable"
        );
        assert_eq!(TableDesc::decode(&bytes).unwrap(), golden_desc());
    }

    #[test]
    fn catalog_backward_compatible_missing_field_takes_default() {
        // An older writer, before `creation_time_ms (id: 4)`: its vtable ends at slot 3.
        let bytes = Raw {
            creation_time_ms: None,
            ..Raw::golden()
        }
        .build();
        assert_eq!(
            root_vtable_len(&bytes),
            4 + 2 * 4,
            "no slot 4 in the vtable"
        );
        assert_eq!(
            TableDesc::decode(&bytes).unwrap(),
            TableDesc {
                creation_time_ms: 0,
                ..golden_desc()
            }
        );
    }

    #[test]
    fn catalog_rejects_missing_required_fields() {
        let missing = |raw: Raw| match TableDesc::decode(&raw.build()) {
            Err(CatalogError::Invalid(InvalidFlatbuffer::MissingRequiredField {
                required,
                ..
            })) => required.into_owned(),
            other => panic!("{other:?}"),
        };
        let golden = Raw::golden();
        assert_eq!(
            missing(Raw {
                name: None,
                ..golden.clone()
            }),
            "name"
        );
        assert_eq!(
            missing(Raw {
                partition_key: None,
                ..golden.clone()
            }),
            "partition_key"
        );
        assert_eq!(
            missing(Raw {
                partition_key: Some((None, ScalarType::S)),
                ..golden.clone()
            }),
            "name"
        );
        assert_eq!(
            missing(Raw {
                sort_key: Some((None, ScalarType::N)),
                ..golden
            }),
            "name"
        );
    }

    #[test]
    fn catalog_rejects_unknown_scalar_type() {
        for (raw, field, value) in [
            (
                Raw {
                    partition_key: Some((Some(b"Artist".to_vec()), ScalarType(3))),
                    ..Raw::golden()
                },
                "partition_key.type",
                3,
            ),
            (
                Raw {
                    sort_key: Some((Some(b"SongTitle".to_vec()), ScalarType(0xff))),
                    ..Raw::golden()
                },
                "sort_key.type",
                0xff,
            ),
        ] {
            let err = TableDesc::decode(&raw.build()).unwrap_err();
            assert!(
                matches!(err, CatalogError::UnknownKeyType { field: f, value: v }
                    if f == field && v == value),
                "{err:?}"
            );
        }
    }

    #[test]
    fn catalog_rejects_bad_names() {
        let long = vec![b'x'; MAX_NAME_LEN + 1];
        let cases = [
            (
                Raw {
                    name: Some(Vec::new()),
                    ..Raw::golden()
                },
                "name",
            ),
            (
                Raw {
                    name: Some(long.clone()),
                    ..Raw::golden()
                },
                "name",
            ),
            (
                Raw {
                    partition_key: Some((Some(long.clone()), ScalarType::S)),
                    ..Raw::golden()
                },
                "partition_key.name",
            ),
            (
                Raw {
                    sort_key: Some((Some(Vec::new()), ScalarType::S)),
                    ..Raw::golden()
                },
                "sort_key.name",
            ),
        ];
        for (raw, field) in cases {
            match TableDesc::decode(&raw.build()) {
                Err(CatalogError::EmptyName { field: f }) if f == field => {}
                Err(CatalogError::NameTooLong { field: f, len }) if f == field => {
                    assert_eq!(len, MAX_NAME_LEN + 1)
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // Not UTF-8: the verifier's job.
        let err = TableDesc::decode(
            &Raw {
                name: Some(vec![b'a', 0xff, 0xfe]),
                ..Raw::golden()
            }
            .build(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::Invalid(InvalidFlatbuffer::Utf8Error { .. })
            ),
            "{err:?}"
        );
        // validate() agrees with decode.
        let too_long = TableDesc {
            name: "x".repeat(MAX_NAME_LEN + 1),
            ..golden_desc()
        };
        assert!(matches!(
            too_long.validate(),
            Err(CatalogError::NameTooLong { field: "name", .. })
        ));
        assert!(golden_desc().validate().is_ok());
    }

    fn arb_key_type() -> impl Strategy<Value = KeyType> {
        prop_oneof![Just(KeyType::S), Just(KeyType::N), Just(KeyType::B)]
    }

    fn arb_key_attr() -> impl Strategy<Value = KeyAttrDesc> {
        ("\\PC{1,60}", arb_key_type()).prop_map(|(name, ty)| KeyAttrDesc { name, ty })
    }

    proptest! {
        #[test]
        fn catalog_prop_round_trip(
            table_id in any::<u32>(),
            name in "\\PC{1,60}",
            partition_key in arb_key_attr(),
            sort_key in proptest::option::of(arb_key_attr()),
            creation_time_ms in any::<u64>(),
        ) {
            let desc = TableDesc { table_id, name, partition_key, sort_key, creation_time_ms };
            prop_assert_eq!(TableDesc::decode(&desc.encode()).unwrap(), desc);
        }

        #[test]
        fn catalog_prop_corrupted_bytes_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = golden_desc().encode();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let len = cut.index(bytes.len() + 1);
            let _ = TableDesc::decode(&bytes[..len]);
        }

        #[test]
        fn catalog_prop_random_bytes_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..256),
            with_identifier in any::<bool>(),
        ) {
            if with_identifier && bytes.len() >= 8 {
                bytes[4..8].copy_from_slice(b"TCAT");
            }
            let _ = TableDesc::decode(&bytes);
        }
    }
}
