//! Shared code of the Keyward examples.
