//! KV value decoders never panic: arbitrary, truncated or foreign bytes give an error, and
//! every value round-trips.

use parti_core::codec::{
    self, CtlValue, GenRecord, LeaderValue, LeaseValue, LoadReport, Member, Phase, ShareAssembler,
    ShareChunk,
};
use parti_core::{Epoch, Generation, PartitionId, WorkerId};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn decode_all(bytes: &[u8]) {
    let _ = codec::decode::<LeaseValue>("lease", bytes);
    let _ = codec::decode::<LeaderValue>("leader", bytes);
    let _ = codec::decode::<GenRecord>("gen", bytes);
    let _ = codec::decode::<ShareChunk>("share", bytes);
    let _ = codec::decode::<CtlValue>("ctl", bytes);
}

fn sample_gen() -> GenRecord {
    let mut members = BTreeMap::new();
    members.insert(
        WorkerId(3),
        Member {
            token: 7,
            digest: 42,
            chunks: 1,
            count: 2,
            slot: 1,
        },
    );
    GenRecord {
        v: 1,
        epoch: Epoch(9),
        generation: Generation(4),
        phase: Phase::Scaling,
        trigger: Some(Phase::Emergency),
        members,
        resting: Some([(PartitionId::parse("orders.7").unwrap(), 59_001)].into()),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_value_is_an_error(cut in 0usize..200) {
        let full = codec::encode(&sample_gen());
        let cut = cut.min(full.len() - 1);
        prop_assert!(codec::decode::<GenRecord>("gen", &full[..cut]).is_err());
    }

    #[test]
    fn json_with_wrong_shapes_is_an_error(v in 0u64..5, junk in "[a-z0-9\":,{}\\[\\]]{0,40}") {
        let text = format!("{{\"v\":{v},{junk}}}");
        decode_all(text.as_bytes());
    }

    #[test]
    fn shares_round_trip_through_any_chunk_size(n in 0usize..400, max in 4096usize..20000) {
        let parts: BTreeSet<PartitionId> = (0..n).map(|i| PartitionId::parse(&format!("t.{i}")).unwrap()).collect();
        let mut asm = ShareAssembler::default();
        for bytes in codec::encode_share(&parts, max) {
            prop_assert!(bytes.len() <= max);
            asm.insert(codec::decode("share", &bytes).unwrap());
        }
        prop_assert_eq!(asm.assemble(), Some(parts));
    }
}

#[test]
fn values_round_trip() {
    let lease = LeaseValue {
        v: 1,
        token: 5,
        capacity: 2,
        applied: Some(Generation(3)),
        departing: true,
        draining: false,
        loads: Some(LoadReport {
            share: 77,
            values: vec![Some(0.5), None, Some(1e30)],
        }),
    };
    let bytes = codec::encode(&lease);
    assert!(
        String::from_utf8_lossy(&bytes)
            .ends_with(r#""loads":{"share":77,"values":[0.5,null,1e+30]}}"#),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(codec::decode::<LeaseValue>("lease", &bytes).unwrap(), lease);
    let no_loads = LeaseValue {
        loads: None,
        ..lease.clone()
    };
    let bytes = codec::encode(&no_loads);
    assert!(!String::from_utf8_lossy(&bytes).contains("loads"));
    assert_eq!(
        codec::decode::<LeaseValue>("lease", &bytes).unwrap(),
        no_loads
    );
    // A lease of an earlier build (a single `load` number) still reads.
    let old = br#"{"v":1,"token":5,"capacity":2,"applied":3,"load":0.5,"departing":true,"draining":false}"#;
    assert_eq!(codec::decode::<LeaseValue>("lease", old).unwrap(), no_loads);
    let gen = sample_gen();
    let bytes = codec::encode(&gen);
    assert!(String::from_utf8_lossy(&bytes).ends_with(r#","resting":{"orders.7":59001}}"#));
    assert_eq!(codec::decode::<GenRecord>("gen", &bytes).unwrap(), gen);
    // A record of an earlier build (no rests) still reads, and says it did not know.
    let old = br#"{"v":1,"epoch":9,"generation":4,"phase":"scaling","members":{}}"#;
    assert_eq!(
        codec::decode::<GenRecord>("gen", old).unwrap().resting,
        None
    );
    // Rests spelled another way (not in increasing order) read the same.
    let unordered = br#"{"v":1,"epoch":9,"generation":4,"phase":"scaling","members":{},"resting":{"b":2,"a":1}}"#;
    let rests = codec::decode::<GenRecord>("gen", unordered)
        .unwrap()
        .resting
        .unwrap();
    assert_eq!(rests.values().copied().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn foreign_values_are_refused_with_a_reason() {
    let err = codec::decode::<LeaseValue>("lease", b"hello").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot decode lease: not a parti value"),
        "{err}"
    );
    let err = codec::decode::<LeaseValue>(
        "lease",
        br#"{"v":1,"token":1,"capacity":1,"loads":{"share":1,"values":[-1.0]}}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("load -1 is not a finite number >= 0"),
        "{err}"
    );
    let err = codec::decode::<LeaseValue>("lease", br#"{"token":1}"#).unwrap_err();
    assert!(err.to_string().contains("no version field"), "{err}");
    let err = codec::decode::<ShareChunk>(
        "share",
        br#"{"v":1,"digest":1,"index":0,"count":1,"partitions":["a..b"]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("key 1 is empty"), "{err}");
    let err = codec::decode::<ShareChunk>(
        "share",
        br#"{"v":1,"digest":1,"index":2,"count":1,"partitions":[]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chunk 2 of 1"), "{err}");
}

#[test]
fn a_share_with_a_missing_or_stale_chunk_is_not_assembled() {
    let parts: BTreeSet<PartitionId> = (0..2000)
        .map(|i| PartitionId::parse(&format!("t.{i}")).unwrap())
        .collect();
    let chunks: Vec<ShareChunk> = codec::encode_share(&parts, 4096)
        .iter()
        .map(|b| codec::decode("share", b).unwrap())
        .collect();
    assert!(chunks.len() >= 3);
    let mut asm = ShareAssembler::default();
    for c in &chunks[..chunks.len() - 1] {
        asm.insert(c.clone());
    }
    assert_eq!(asm.assemble(), None, "a chunk is missing");
    let mut stale = chunks[chunks.len() - 1].clone();
    stale.digest ^= 1;
    asm.insert(stale);
    assert_eq!(
        asm.assemble(),
        None,
        "the last chunk belongs to another share"
    );
    asm.insert(chunks[chunks.len() - 1].clone());
    assert_eq!(asm.assemble(), Some(parts));
}
