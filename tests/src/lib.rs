//! Cross-crate integration tests of `parti` against real `nats-server` processes.
//!
//! This crate has no code of its own: the tests are in `tests/` (one file per theme), the shared
//! helpers in `tests/common`. Run them with `cargo test -p parti-integration-tests`; they need
//! a nats-server ≥ 2.11 (`scripts/setup` installs the pinned one into `.venv`).
