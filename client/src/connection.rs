//! One blocking, framed connection to one port of a tern node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tern_protocol::ErrorCode;
use tern_protocol::frame::{FLAG_ERROR, Header, Opcode, parse_frame};
use tern_protocol::messages::{ErrorResponse, decode};

use crate::error::{Error, Result};

/// A reply frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub header: Header,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn opcode(&self) -> Opcode {
        self.header.opcode
    }

    /// The typed error the frame carries, if it is an error frame.
    pub fn error(&self) -> Option<Error> {
        if self.header.flags & FLAG_ERROR == 0 {
            return None;
        }
        Some(match decode::<ErrorResponse>(&self.body) {
            Ok(e) => Error::Api {
                code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::InternalServerError),
                message: e.message,
            },
            Err(e) => Error::Protocol(format!("undecodable error frame: {e}")),
        })
    }

    /// `Ok(self)` unless it is an error frame.
    pub fn into_result(self) -> Result<RawReply> {
        match self.error() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// How much the receive buffer grows per read; it grows to hold the largest frame seen.
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub struct Connection {
    endpoint: String,
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by parsed frames.
    start: usize,
    timeout: Duration,
}

impl Connection {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Connection> {
        let endpoint = addr.to_string();
        let io = |source| Error::Io {
            endpoint: endpoint.clone(),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Ok(Connection {
            endpoint,
            stream,
            buf: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        match source.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout {
                endpoint: self.endpoint.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            },
            _ => Error::Io {
                endpoint: self.endpoint.clone(),
                source,
            },
        }
    }

    /// Writes already-framed bytes (one or many frames).
    pub fn send(&mut self, frames: &[u8]) -> Result<()> {
        self.stream.write_all(frames).map_err(|e| self.io_error(e))
    }

    /// Reads the next reply frame.
    pub fn recv(&mut self) -> Result<RawReply> {
        loop {
            match parse_frame(&self.buf[self.start..]) {
                Ok(Some((frame, used))) => {
                    let reply = RawReply {
                        header: frame.header,
                        body: frame.body.to_vec(),
                    };
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::Protocol(format!(
                        "bad frame from {}: {e}",
                        self.endpoint
                    )));
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK_BYTES, 0);
            let n = loop {
                match self.stream.read(&mut self.buf[len..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(len);
                        return Err(self.io_error(e));
                    }
                }
            };
            self.buf.truncate(len + n);
            if n == 0 {
                return Err(Error::Io {
                    endpoint: self.endpoint.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ),
                });
            }
        }
    }
}
