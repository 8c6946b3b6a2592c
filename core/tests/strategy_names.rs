//! Pins down the strategy registry: every name in `strategy::NAMES` builds the strategy that
//! calls itself by that name, and any other name is one error that lists the valid names.

use parti_core::strategy::{self, NAMES};
use parti_core::Error;

#[test]
fn every_registered_name_builds_the_strategy_of_that_name() {
    for name in NAMES {
        let s = strategy::by_name(name).expect("a registered name");
        assert_eq!(s.name(), name);
    }
}

#[test]
fn names_are_distinct_and_balanced_comes_first() {
    let mut sorted = NAMES.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), NAMES.len(), "{NAMES:?}");
    assert_eq!(NAMES[0], "balanced");
}

#[test]
fn an_unknown_name_is_one_error_listing_every_valid_name() {
    for bad in ["fastest", "", "Balanced", "round_robin"] {
        let e = strategy::by_name(bad).expect_err(bad);
        assert_eq!(e, Error::UnknownStrategy { name: bad.into() });
        let message = e.to_string();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        for name in NAMES {
            assert!(message.contains(name), "{name} in {message}");
        }
    }
}
