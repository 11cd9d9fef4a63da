//! keyward-sqlite (in progress)
