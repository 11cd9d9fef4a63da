//! The store conformance suite (feature `test-util`): the [`KeyStore`] contract as tests
//! (docs/ARCHITECTURE.md, "The store contract"), and the helpers and test doubles that
//! Keyward's own tests, benches and fuzz targets share.
//!
//! Every store runs all of it with one line in its tests:
//!
//! ```text
//! async fn make_store() -> Option<Arc<dyn KeyStore>> { Some(Arc::new(MyStore::new())) }
//! keyward::store_conformance_tests!(make_store);
//! ```
//!
//! The factory returns `None` when the backend is not available (the test prints that it was
//! skipped); it should panic instead when the environment demands the backend (CI). Each case
//! uses fresh random project names, so cases may share one database.
//!
//! The cases are listed once, in `__conformance_cases!`: [`CASES`], [`run_case`], the
//! re-exports of the case functions and the tests [`store_conformance_tests!`] writes all come
//! from that list. A case function that is not in it is never used, which the case modules
//! make a compile error (`deny(dead_code)`), so no case can be skipped.
//!
//! [`KeyStore`]: crate::KeyStore
//! [`store_conformance_tests!`]: crate::store_conformance_tests

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod audit_cases;
mod doubles;
mod helpers;
mod leaks;
mod lease_cases;
mod manager_cases;
mod rotation_cases;
mod store_cases;

pub use doubles::{
    CallCounter, CountingStore, Delay, DownSwitch, FailingStore, Guard, StoreHook, WithGuard,
    Wrapped,
};
pub use helpers::{SAMPLE_PHC, fix_checksum, sample_record, secret_of, with_wrong_secret};
pub use leaks::{
    KeyForms, LogBuffer, SECRET_WINDOW, assert_keys_hidden, assert_no_leak, shared_secret_window,
};

crate::__conformance_cases!(@define);

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh store from
/// `$factory` (an `async fn() -> Option<Arc<dyn KeyStore>>`; `None` prints a skip notice).
/// The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path) => {
        $crate::__conformance_cases!(@tests $factory);
    };
}

/// The one list of conformance cases, in the order they run, each as `module::function`.
/// `@define` (in `keyward::conformance`) re-exports the functions and writes `CASES` and
/// `run_case`; `@tests $factory` (in a store's tests) writes one test per case.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ([@define] $($module:ident :: $case:ident),* $(,)?) => {
        $(pub use $module::$case;)*

        /// The names of every case, in the order
        /// [`store_conformance_tests!`](crate::store_conformance_tests) runs them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];

        /// Runs one case by name.
        ///
        /// # Panics
        /// When the case fails, or the name is unknown.
        pub async fn run_case(name: &str, store: &::std::sync::Arc<dyn $crate::store::KeyStore>) {
            match name {
                $(stringify!($case) => $case(store).await,)*
                other => panic!("unknown conformance case {other}"),
            }
        }
    };
    ([@tests $factory:path] $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                match $factory().await {
                    Some(store) => $crate::conformance::$case(&store).await,
                    None => eprintln!("SKIPPED {}: store not available", stringify!($case)),
                }
            }
        )*
        #[test]
        fn every_conformance_case_is_run() {
            let ours: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(ours, $crate::conformance::CASES);
        }
    };
    (@ $($mode:tt)*) => {
        $crate::__conformance_cases!([@ $($mode)*]
            store_cases::insert_and_get_round_trip_every_field,
            store_cases::get_of_an_unknown_id_is_none,
            store_cases::insert_many_inserts_every_record,
            store_cases::duplicate_insert_is_already_exists_and_keeps_the_original,
            store_cases::list_filters_and_pages_in_created_order,
            store_cases::update_changes_only_the_named_fields,
            store_cases::update_of_an_unknown_id_is_none,
            store_cases::revoke_is_idempotent_and_keeps_the_first_time,
            store_cases::concurrent_updates_of_different_fields_are_all_kept,
            store_cases::record_usage_keeps_the_latest_time_and_skips_unknown_ids,
            store_cases::consume_never_overspends_under_concurrency,
            store_cases::consume_refuses_a_batch_crossing_the_limit_whole,
            store_cases::usage_is_counted_per_counter_and_per_period,
            store_cases::changes_since_reports_updated_ids_and_advances,
            rotation_cases::rotate_replaces_a_key_in_one_step_and_logs_the_old_id,
            rotation_cases::rotate_refuses_revoked_expired_and_rotated_keys_unless_forced,
            rotation_cases::rotate_to_a_taken_id_is_already_exists_and_writes_nothing,
            rotation_cases::concurrent_rotations_and_a_revoke_serialize_in_the_store,
            store_cases::changes_since_reports_inserted_ids,
            manager_cases::manager_issues_verifies_and_binds_keys,
            manager_cases::manager_revokes_rotates_and_expires_keys,
            manager_cases::revoke_is_effective_for_every_verify_that_starts_after_it,
            manager_cases::the_store_never_holds_the_secret,
            store_cases::settings_round_trip_and_delete,
            store_cases::release_gives_units_back_but_never_below_zero,
            manager_cases::manager_event_quotas_refuse_whole_batches_and_roll_over,
            manager_cases::manager_credits_are_used_per_verify_and_refill_at_the_boundary,
            manager_cases::manager_rate_limits_reject_the_burst_and_recover,
            rotation_cases::concurrent_manager_rotations_and_a_revoke_make_no_successor_of_a_revoked_key,
            rotation_cases::manager_rotation_is_explicit_and_reports_both_ends,
            audit_cases::every_change_appends_its_entries_once_with_every_field,
            audit_cases::audit_pages_newest_first_with_before,
            audit_cases::audit_filters_by_project_environment_and_key,
            audit_cases::prune_audit_deletes_only_older_entries,
            audit_cases::a_change_whose_audit_entry_is_refused_is_not_applied,
            audit_cases::the_manager_audits_every_admin_change_once_with_its_actor,
            lease_cases::lease_never_over_reserves_under_concurrency,
            lease_cases::lease_grants_want_or_all_that_is_free_or_none,
            lease_cases::consume_counts_leased_units_against_the_limit,
            lease_cases::settle_moves_spent_units_into_used_and_frees_the_rest,
            lease_cases::leases_are_separate_per_counter_and_period,
            lease_cases::huge_leases_and_settlements_answer_without_panic,
            lease_cases::take_cells_gives_the_burst_then_refills_at_the_emission_rate,
            lease_cases::concurrent_take_cells_never_hand_out_more_than_is_free,
            lease_cases::return_cells_gives_cells_back_but_never_before_now,
            manager_cases::manager_cluster_rate_limits_hold_across_two_managers,
        );
    };
}
