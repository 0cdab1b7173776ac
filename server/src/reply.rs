//! Building reply frames.

use tern_protocol::ApiError;
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, NO_SHARD_HINT, Opcode, write_frame, write_frame_raw,
    write_frame_with_body_crc,
};
use tern_protocol::limits::FRAME_BODY_MAX_BYTES;
use tern_protocol::messages::{ErrorResponse, encode};

/// Appends a successful response whose body is already encoded.
///
/// Every reply is bounded by construction to fit a frame (`crate::limits` ties the
/// bounds together at compile time). Should one ever not, the request gets an
/// InternalServerError naming it instead of the shard panicking in `write_frame`.
pub fn ok(out: &mut Vec<u8>, opcode: Opcode, request_id: u64, body: &[u8]) {
    if body.len() > FRAME_BODY_MAX_BYTES {
        tracing::error!(
            "BUG: a {} reply of {} bytes exceeds the frame limit; answering with an error",
            opcode.name(),
            body.len()
        );
        let e = ApiError::internal(format!(
            "the {} reply would be {} bytes, over the frame limit of {FRAME_BODY_MAX_BYTES}",
            opcode.name(),
            body.len()
        ));
        return error(out, opcode, request_id, &e);
    }
    write_frame(
        out,
        opcode,
        FLAG_RESPONSE,
        request_id,
        NO_SHARD_HINT,
        &[body],
    );
}

/// Appends a GetItem response: the stored item bytes as the body, or an empty body. A
/// found item's CRC32, when the caller knows it (an item-cache hit), is the frame's body
/// CRC instead of being computed again.
pub fn item(out: &mut Vec<u8>, request_id: u64, item: Option<&[u8]>, crc: Option<u32>) {
    match (item, crc) {
        (Some(bytes), _) if bytes.len() > FRAME_BODY_MAX_BYTES => {
            ok(out, Opcode::GetItem, request_id, bytes)
        }
        (Some(bytes), Some(crc)) => write_frame_with_body_crc(
            out,
            Opcode::GetItem,
            FLAG_RESPONSE | FLAG_FOUND,
            request_id,
            NO_SHARD_HINT,
            bytes,
            crc,
        ),
        (Some(bytes), None) => write_frame(
            out,
            Opcode::GetItem,
            FLAG_RESPONSE | FLAG_FOUND,
            request_id,
            NO_SHARD_HINT,
            &[bytes],
        ),
        (None, _) => write_frame(
            out,
            Opcode::GetItem,
            FLAG_RESPONSE,
            request_id,
            NO_SHARD_HINT,
            &[],
        ),
    }
}

/// Longest error message sent (messages that echo client input are cut to this).
pub const ERROR_MESSAGE_MAX_BYTES: usize = 4096;

/// Appends an error response carrying a DynamoDB error name and message.
pub fn error(out: &mut Vec<u8>, opcode: Opcode, request_id: u64, err: &ApiError) {
    error_raw(out, opcode as u8, request_id, err)
}

/// [`error`] with the opcode as a byte (the reply to an opcode this build does not know
/// echoes it).
pub fn error_raw(out: &mut Vec<u8>, opcode: u8, request_id: u64, err: &ApiError) {
    let mut message = err.message.as_str();
    if message.len() > ERROR_MESSAGE_MAX_BYTES {
        let mut cut = ERROR_MESSAGE_MAX_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message = &message[..cut];
    }
    let body = encode(&ErrorResponse {
        code: err.code as u16,
        message: message.to_owned(),
    });
    write_frame_raw(
        out,
        opcode,
        FLAG_RESPONSE | FLAG_ERROR,
        request_id,
        NO_SHARD_HINT,
        &[&body],
    );
}

/// A frame as bytes: (opcode, request id) of a reply frame, for routing answers.
pub fn frame_to_vec(opcode: Opcode, request_id: u64, result: Result<Vec<u8>, ApiError>) -> Vec<u8> {
    let mut out = Vec::new();
    match result {
        Ok(body) => ok(&mut out, opcode, request_id, &body),
        Err(e) => error(&mut out, opcode, request_id, &e),
    }
    out
}
