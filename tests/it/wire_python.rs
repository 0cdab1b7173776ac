//! The wire document is a contract: `tests/wire/` holds a Python client written from
//! docs/wire-protocol.md alone, by a developer who read nothing else of this repository,
//! and its conformance script (`test_wire.py`: the golden examples byte for byte, every
//! operation, the error frames and the connection rules) runs here against the real
//! `ternd`. A change to the protocol that the document does not follow fails it.
//!
//! Needs python3 (required when `TERN_REQUIRE_PYTHON=1`, as `scripts/test.sh` sets); with
//! the `xxhash` package it also routes by the documented hash (required when
//! `TERN_REQUIRE_XXHASH=1`), without it everything goes to the shared port.

use std::process::Command;

#[test]
fn a_client_written_from_the_wire_document_alone_conforms() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/wire/test_wire.py");
    let run = Command::new("python3")
        .arg(script)
        .arg("--ternd")
        .arg(env!("CARGO_BIN_EXE_ternd"))
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) if std::env::var_os("TERN_REQUIRE_PYTHON").is_none() => {
            eprintln!("skipping the Python wire conformance test: python3 not runnable ({e})");
            return;
        }
        Err(e) => panic!("python3 is required (TERN_REQUIRE_PYTHON=1): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "wire conformance failed ({:?}):\n{}\n--- stdout tail ---\n{}\n--- stderr ---\n{stderr}",
        out.status,
        failures.join("\n"),
        stdout.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .expect("a SUMMARY line");
    eprintln!("wire conformance: {summary}");
    if std::env::var_os("TERN_REQUIRE_XXHASH").is_some() {
        assert!(
            stdout.contains("routing path: xxhash"),
            "the client must route by the documented hash (pip install xxhash)"
        );
    }
}
