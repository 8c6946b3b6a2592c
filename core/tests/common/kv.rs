//! Helpers of the simulator-mechanics tests (`sim_kv.rs`, `sim_net.rs`): virtual instants and
//! KV operations in one call.

use parti_core::{Instant, KvOp, KvResult};

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

pub fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

pub fn create(key: &str, value: &str) -> KvOp {
    KvOp::Create {
        key: key.into(),
        value: value.into(),
    }
}

pub fn update(key: &str, value: &str, revision: u64) -> KvOp {
    KvOp::Update {
        key: key.into(),
        value: value.into(),
        revision,
    }
}

pub fn written(r: u64) -> KvResult {
    KvResult::Written { revision: r }
}
