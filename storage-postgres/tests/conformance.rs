//! The shared store conformance suite, against a real PostgreSQL (`DATABASE_URL`), each case
//! on its own schema and a pool of several connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

keyward::store_conformance_tests!(common::make_store);
