//! DynamoDB's rules on a request's shape — how many keys a batch may carry, how many
//! bytes, a table named twice, a parallel scan's segment numbers, ListTables' page size —
//! checked before any item in it is looked at, with DynamoDB's messages. The rules on the
//! items and keys themselves are in `validate`.

use std::collections::HashSet;

use crate::error::ApiError;
use crate::limits::{
    BATCH_GET_KEYS_MAX, BATCH_WRITE_ITEMS_MAX, BATCH_WRITE_REQUEST_MAX_BYTES,
    LIST_TABLES_LIMIT_MAX, SCAN_TOTAL_SEGMENTS_MAX,
};

/// BatchGetItem: between 1 and 100 keys over all its tables.
pub fn check_batch_get_count(total: usize) -> Result<(), ApiError> {
    if total == 0 || total > BATCH_GET_KEYS_MAX {
        return Err(ApiError::validation(format!(
            "Too many items requested for the BatchGetItem call: {total} keys, must be between 1 and {BATCH_GET_KEYS_MAX}"
        )));
    }
    Ok(())
}

/// BatchWriteItem: between 1 and 25 write requests over all its tables.
pub fn check_batch_write_count(total: usize) -> Result<(), ApiError> {
    if total == 0 || total > BATCH_WRITE_ITEMS_MAX {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must have between 1 and {BATCH_WRITE_ITEMS_MAX} write requests, got {total}"
        )));
    }
    Ok(())
}

/// BatchWriteItem: its items and keys take at most 16 MB.
pub fn check_batch_write_bytes(request_bytes: usize) -> Result<(), ApiError> {
    if request_bytes > BATCH_WRITE_REQUEST_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "Item size has exceeded the maximum allowed size: the request's items and keys take {request_bytes} bytes, the most one BatchWriteItem may carry is {BATCH_WRITE_REQUEST_MAX_BYTES}"
        )));
    }
    Ok(())
}

/// A batch's RequestItems name each table once.
pub fn check_tables_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ApiError::validation(format!(
                "Table {name} appears twice in RequestItems"
            )));
        }
    }
    Ok(())
}

/// A parallel Scan's TotalSegments is 1..=1,000,000 and its Segment is below it.
pub fn check_scan_segments(segment: u32, total_segments: u32) -> Result<(), ApiError> {
    if total_segments == 0 || total_segments > SCAN_TOTAL_SEGMENTS_MAX {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{total_segments}' at 'totalSegments' failed to satisfy constraint: Member must have value between 1 and {SCAN_TOTAL_SEGMENTS_MAX}"
        )));
    }
    if segment >= total_segments {
        return Err(ApiError::validation(format!(
            "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {segment} is not less than TotalSegments: {total_segments}"
        )));
    }
    Ok(())
}

/// ListTables' page size: `Limit` when given (1..=100), else 100.
pub fn list_tables_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(LIST_TABLES_LIMIT_MAX),
        Some(l) if (1..=LIST_TABLES_LIMIT_MAX).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {LIST_TABLES_LIMIT_MAX}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn refused(r: Result<(), ApiError>) -> String {
        let e = r.expect_err("refused");
        assert_eq!(e.code, ErrorCode::ValidationException);
        e.message
    }

    #[test]
    fn batch_counts_and_bytes_at_their_edges() {
        assert!(refused(check_batch_get_count(0)).contains("between 1 and 100"));
        check_batch_get_count(1).unwrap();
        check_batch_get_count(100).unwrap();
        assert!(refused(check_batch_get_count(101)).contains("101 keys"));
        refused(check_batch_write_count(0));
        check_batch_write_count(25).unwrap();
        assert!(refused(check_batch_write_count(26)).contains("got 26"));
        check_batch_write_bytes(BATCH_WRITE_REQUEST_MAX_BYTES).unwrap();
        refused(check_batch_write_bytes(BATCH_WRITE_REQUEST_MAX_BYTES + 1));
    }

    #[test]
    fn a_table_twice_is_named() {
        check_tables_unique(["a", "b"].into_iter()).unwrap();
        assert_eq!(
            refused(check_tables_unique(["a", "b", "a"].into_iter())),
            "Table a appears twice in RequestItems"
        );
    }

    #[test]
    fn scan_segments_and_list_limits() {
        check_scan_segments(0, 1).unwrap();
        check_scan_segments(999_999, 1_000_000).unwrap();
        assert!(refused(check_scan_segments(0, 0)).contains("'totalSegments'"));
        refused(check_scan_segments(0, 1_000_001));
        assert!(refused(check_scan_segments(4, 4)).contains("Segment: 4 is not less"));
        assert_eq!(list_tables_limit(None).unwrap(), 100);
        assert_eq!(list_tables_limit(Some(1)).unwrap(), 1);
        assert!(list_tables_limit(Some(0)).is_err());
        assert!(list_tables_limit(Some(101)).is_err());
    }
}
