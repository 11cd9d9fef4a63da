#![doc = include_str!("../README.md")]
//!
//! This library holds the code the example binaries share: the example ingestion server
//! ([`server`]), protected by `keyward::axum`. Opening a store from a URL, the hash
//! parameters, logging and running an async `main` come from [`keyward_cli`], the library of
//! the admin CLI's package.
#![forbid(unsafe_code)]

pub mod actix;
pub mod server;
