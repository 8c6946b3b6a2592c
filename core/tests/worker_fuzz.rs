//! A worker fed arbitrary inputs — foreign or malformed KV bytes, results for unknown requests,
//! entries on unknown watches, random timings — never panics and never asks for a timer in the
//! past after a timeout was handled.

use parti_core::{
    Action, Bucket, Config, Entry, Input, Instant, KvOp, KvResult, Operation, Partition, RequestId,
    WatchId, WorkerMachine,
};
use proptest::prelude::*;
use std::time::Duration;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("gen".to_owned()),
        Just("leader".to_owned()),
        Just("worker.0".to_owned()),
        Just("worker.1".to_owned()),
        Just("worker.0.0.0".to_owned()),
        Just("worker.0.1.0".to_owned()),
        Just("ctl.refresh".to_owned()),
        Just("ctl.drain.0".to_owned()),
        Just("ctl.pin.p0001".to_owned()),
        Just("ctl.pin.a..b".to_owned()),
        "[a-z0-9.]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"v":1,"worker":0,"token":0}"#.to_vec()),
        Just(br#"{"v":1,"token":0,"capacity":1,"departing":true}"#.to_vec()),
        Just(br#"{"v":1,"epoch":1,"generation":5,"phase":"stable","members":{"0":{"token":0,"digest":1,"chunks":1,"count":0,"slot":0}}}"#.to_vec()),
        Just(br#"{"v":1,"digest":1,"index":0,"count":1,"partitions":["a.b"]}"#.to_vec()),
        Just(br#"{"v":2}"#.to_vec()),
    ]
}

fn result() -> impl Strategy<Value = KvResult> {
    prop_oneof![
        (1u64..100).prop_map(|revision| KvResult::Written { revision }),
        Just(KvResult::AlreadyExists),
        Just(KvResult::WrongRevision),
        Just(KvResult::TimedOut),
        Just(KvResult::Failed("boom".into())),
        Just(KvResult::Value(None)),
        Just(KvResult::Entries(vec![])),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Entry(u64, bool, String, u64, u8, Vec<u8>),
    Result(u64, KvResult),
    Partitions(u64, bool),
    Unsubscribed(String),
    Refresh,
    Drain,
    Stop(bool),
    Connection(bool),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..8, any::<bool>(), key(), 0u64..50, 0u8..3, value())
            .prop_map(|(w, b, k, r, o, v)| Step::Entry(w, b, k, r, o, v)),
        3 => (0u64..30, result()).prop_map(|(id, r)| Step::Result(id, r)),
        1 => (0u64..30, any::<bool>()).prop_map(|(id, ok)| Step::Partitions(id, ok)),
        1 => "[a-z.]{1,6}".prop_map(Step::Unsubscribed),
        1 => Just(Step::Refresh),
        1 => Just(Step::Drain),
        1 => any::<bool>().prop_map(Step::Stop),
        1 => any::<bool>().prop_map(Step::Connection),
        3 => (0u64..5000).prop_map(Step::Advance),
    ]
}

fn answer_all(w: &mut WorkerMachine, now: Instant, rounds: usize) {
    let mut revision = 100;
    for _ in 0..rounds {
        let actions: Vec<Action> = std::iter::from_fn(|| w.poll_action()).collect();
        for a in actions {
            revision += 1;
            let input = match a {
                Action::Kv { id, op, .. } => Input::KvResult {
                    id,
                    result: match op {
                        KvOp::List { .. } => KvResult::Entries(vec![]),
                        KvOp::Get { .. } => KvResult::Value(None),
                        _ => KvResult::Written { revision },
                    },
                },
                Action::ListPartitions(id) => Input::Partitions {
                    id,
                    result: Ok(vec![Partition::single("a").unwrap()]),
                },
                _ => continue,
            };
            w.handle_input(now, input).unwrap();
        }
        while w.poll_event().is_some() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn arbitrary_inputs_never_panic(lead in any::<bool>(), steps in proptest::collection::vec(step(), 1..60)) {
        let mut now = Instant::ZERO;
        let config = Config { instance_token: 7, ..Config::default() };
        let mut w = WorkerMachine::new(config, now).unwrap();
        if lead {
            // Answer everything with success for a while: the worker claims an ID, leads and
            // commits a first generation, so the fuzzing starts deep in the protocol.
            now += Duration::from_secs(31);
            answer_all(&mut w, now, 5);
            w.handle_timeout(now);
            answer_all(&mut w, now, 5);
            prop_assert!(w.worker_id().is_some() && w.is_leader());
        }
        for s in steps {
            let input = match s {
                Step::Entry(watch, leases, key, revision, op, value) => Input::WatchEntry {
                    watch: WatchId(watch),
                    entry: Entry {
                        bucket: if leases { Bucket::Leases } else { Bucket::Assign },
                        key,
                        revision,
                        operation: [Operation::Put, Operation::Delete, Operation::Purge][op as usize],
                        value,
                    },
                },
                Step::Result(id, result) => Input::KvResult { id: RequestId(id), result },
                Step::Partitions(id, ok) => Input::Partitions {
                    id: RequestId(id),
                    result: if ok { Ok(vec![Partition::single("a").unwrap()]) } else { Err("down".into()) },
                },
                Step::Unsubscribed(p) => match parti_core::PartitionId::parse(&p) {
                    Ok(p) => Input::Unsubscribed(p),
                    Err(_) => continue,
                },
                Step::Refresh => Input::RefreshPartitions,
                Step::Drain => Input::Drain,
                Step::Stop(f) => Input::Stop { final_stop: f },
                Step::Connection(up) => Input::Connection(up),
                Step::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    if w.poll_timeout().is_some_and(|t| t <= now) {
                        w.handle_timeout(now);
                        prop_assert!(w.poll_timeout().is_none_or(|t| t > now), "timer in the past after handle_timeout");
                    }
                    continue;
                }
            };
            // Inputs after a stop are refused with an error, never a panic.
            let _ = w.handle_input(now, input);
            while w.poll_action().is_some() {}
            while w.poll_event().is_some() {}
        }
    }
}
