//! Building reply frames.

use tern_protocol::ApiError;
use tern_protocol::frame::{
    FLAG_ERROR, FLAG_FOUND, FLAG_RESPONSE, NO_SHARD_HINT, Opcode, write_frame,
};
use tern_protocol::messages::{ErrorResponse, encode};

/// Appends a successful response whose body is already encoded.
pub fn ok(out: &mut Vec<u8>, opcode: Opcode, request_id: u64, body: &[u8]) {
    write_frame(
        out,
        opcode,
        FLAG_RESPONSE,
        request_id,
        NO_SHARD_HINT,
        &[body],
    );
}

/// Appends a GetItem response: the stored item bytes as the body, or an empty body.
pub fn item(out: &mut Vec<u8>, request_id: u64, item: Option<&[u8]>) {
    match item {
        Some(bytes) => write_frame(
            out,
            Opcode::GetItem,
            FLAG_RESPONSE | FLAG_FOUND,
            request_id,
            NO_SHARD_HINT,
            &[bytes],
        ),
        None => write_frame(
            out,
            Opcode::GetItem,
            FLAG_RESPONSE,
            request_id,
            NO_SHARD_HINT,
            &[],
        ),
    }
}

/// Appends an error response carrying a DynamoDB error name and message.
pub fn error(out: &mut Vec<u8>, opcode: Opcode, request_id: u64, err: &ApiError) {
    let body = encode(&ErrorResponse {
        code: err.code as u16,
        message: err.message.clone(),
    });
    write_frame(
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
