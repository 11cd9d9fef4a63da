//! Keyward benchmarks (see benches/).
