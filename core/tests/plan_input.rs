//! Bad input to `plan`, `explain` and `validate_input` is an error naming the field and the
//! allowed range; IDs in messages are cut by `short_id`; a partition given as one string
//! follows one rule (`Partition::parse`, keys joined by `.`).

use parti_core::strategy::{Balanced, RoundRobin};
use parti_core::{
    explain, plan, short_id, validate_input, Error, Partition, PartitionId, PlanInput, WorkerId,
    WorkerSlot,
};

fn slot(id: u32, capacity: u32) -> WorkerSlot {
    WorkerSlot {
        id: WorkerId(id),
        capacity,
    }
}

fn parts(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::single(&format!("p{i}")).unwrap())
        .collect()
}

fn pid(s: &str) -> PartitionId {
    PartitionId::parse(s).unwrap()
}

/// The message of `validate_input`'s error, which must be `InvalidConfig` on `field`.
fn refused(input: &PlanInput, field: &str) -> String {
    match validate_input(input) {
        Err(e @ Error::InvalidConfig { field: f, .. }) if f == field => e.to_string(),
        other => panic!("expected an error on {field}, got {other:?}"),
    }
}

#[test]
fn capacity_zero_names_the_worker_the_field_and_the_range() {
    let input = PlanInput::new(vec![slot(1, 1), slot(2, 0)], parts(4));
    let e = plan(&Balanced::default(), &input).unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid config: workers: worker 2 has capacity 0; capacity must be 1..=4294967295"
    );
    assert_eq!(validate_input(&input).unwrap_err().to_string(), e);
}

#[test]
fn a_bad_slack_names_the_field_and_the_range() {
    for slack in [-0.1, f64::NAN, f64::INFINITY] {
        let input = PlanInput {
            slack,
            ..PlanInput::new(vec![slot(1, 1)], parts(2))
        };
        let e = refused(&input, "slack");
        assert!(e.contains(">= 0"), "{e}");
    }
}

#[test]
fn an_empty_worker_list_is_refused_by_validate_input_only() {
    let input = PlanInput::new(vec![], parts(3));
    let e = refused(&input, "workers");
    assert!(e.contains("at least one worker"), "{e}");
    // The leader may plan with nobody eligible: `plan` itself still answers, with nothing.
    assert!(plan(&Balanced::default(), &input)
        .unwrap()
        .assignment
        .is_empty());
}

#[test]
fn previous_and_pins_may_name_only_listed_partitions() {
    let mut input = PlanInput::new(vec![slot(1, 1), slot(2, 1)], parts(3));
    input.previous.insert(pid("p9"), WorkerId(1));
    let e = refused(&input, "previous");
    assert!(e.contains("partition p9 is not in partitions"), "{e}");
    input.previous.clear();
    input.pins.insert(pid("q.1"), WorkerId(1));
    let e = refused(&input, "pins");
    assert!(e.contains("partition q.1 is not in partitions"), "{e}");
    // The tolerant `plan` (the leader's call) ignores both.
    input.previous.insert(pid("p9"), WorkerId(1));
    assert_eq!(
        plan(&Balanced::default(), &input).unwrap().assignment.len(),
        3
    );
}

#[test]
fn a_pin_to_an_unlisted_worker_is_refused_but_a_gone_previous_owner_is_a_leave() {
    let mut input = PlanInput::new(vec![slot(1, 1), slot(2, 1)], parts(4));
    input.pins.insert(pid("p0"), WorkerId(9));
    let e = refused(&input, "pins");
    assert!(
        e.contains("partition p0 is pinned to worker 9, which is not in workers"),
        "{e}"
    );
    input.pins.clear();
    input.pins.insert(pid("p0"), WorkerId(2));
    // Worker 3 left: its partitions' previous owner is not listed, which previews the leave.
    input.previous.insert(pid("p1"), WorkerId(3));
    input.previous.insert(pid("p2"), WorkerId(1));
    validate_input(&input).unwrap();
    let p = plan(&Balanced::default(), &input).unwrap();
    assert_eq!(p.assignment[&pid("p0")], WorkerId(2));
}

#[test]
fn validate_input_also_refuses_what_plan_refuses() {
    let mut list = parts(2);
    list.push(list[0].clone());
    let input = PlanInput::new(vec![slot(1, 1)], list);
    assert!(matches!(
        validate_input(&input),
        Err(Error::InvalidPartition { partition, reason }) if partition == "p0" && reason == "listed twice"
    ));
    let input = PlanInput::new(vec![slot(1, 1), slot(1, 2)], parts(2));
    assert!(refused(&input, "workers").contains("worker 1 is listed twice"));
}

#[test]
fn short_id_keeps_short_ids_and_cuts_long_ones_at_character_boundaries() {
    assert_eq!(short_id("orders.7"), "orders.7");
    let sixty_four = "a".repeat(64);
    assert_eq!(short_id(&sixty_four), sixty_four.as_str());
    let long = format!("{}{}", "x".repeat(99_990), "0123456789");
    let cut = short_id(&long);
    assert_eq!(cut.chars().count(), 40 + 1 + 16);
    assert!(cut.starts_with(&"x".repeat(40)), "{cut}");
    assert!(cut.ends_with("xxxxxx0123456789"), "{cut}");
    assert!(cut.contains('…'));
    // Characters, not bytes: a multi-byte text is cut where a character ends.
    let wide = "é".repeat(100);
    assert_eq!(short_id(&wide).chars().count(), 57);
}

#[test]
fn a_huge_partition_id_is_cut_in_every_message() {
    let huge = "a".repeat(100_000);
    let messages = [
        Partition::single(&huge).unwrap_err().to_string(),
        Partition::parse(&format!("{huge}.b"), 1)
            .unwrap_err()
            .to_string(),
        Partition::single(&format!("{huge}*"))
            .unwrap_err()
            .to_string(),
        PartitionId::parse(&huge).unwrap_err().to_string(),
    ];
    for m in messages {
        assert!(m.len() < 300, "{} bytes: {}", m.len(), &m[..300]);
        assert!(m.contains('…'), "{m}");
    }
    let m = Partition::single(&huge).unwrap_err().to_string();
    assert!(
        m.contains("id is 100000 bytes long; allowed 1..=256"),
        "{m}"
    );
}

#[test]
fn explain_of_an_unlisted_partition_names_it_shortly() {
    let long = format!("{}.{}", "k".repeat(120), "tail");
    let input = PlanInput::new(vec![slot(1, 1)], parts(2));
    let e = explain(&RoundRobin, &input, &pid(&long))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the input's partition list"), "{e}");
    assert!(e.contains('…') && e.len() < 150, "{e}");
}

#[test]
fn a_partition_given_as_one_string_is_its_keys_joined_by_dots() {
    let p = Partition::parse("x.y", 7).unwrap();
    assert_eq!(p, Partition::new(&["x", "y"], 7).unwrap());
    assert_eq!(p.keys().collect::<Vec<_>>(), ["x", "y"]);
    for bad in ["", "x..y", ".x", "x.", "a b", "x.é"] {
        let e = Partition::parse(bad, 1).unwrap_err();
        assert!(matches!(e, Error::InvalidPartition { .. }), "{bad:?}: {e}");
        assert_eq!(
            PartitionId::parse(bad).unwrap_err(),
            e,
            "the same rule as PartitionId::parse for {bad:?}"
        );
    }
    let e = Partition::parse("x", 0).unwrap_err().to_string();
    assert!(
        e.contains("weight 0 is out of range; allowed 1..=18446744073709551615"),
        "{e}"
    );
}
