//! GitHub secret-scanning reports.
