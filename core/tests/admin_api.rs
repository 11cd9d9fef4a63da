//! The admin API over HTTP (tower `oneshot`).
