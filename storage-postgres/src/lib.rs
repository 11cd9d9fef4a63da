//! keyward-postgres (in progress)
