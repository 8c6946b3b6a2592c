//! Operators' pins: `ctl.pin.<partition>` in the fleet's assign bucket names the worker a
//! partition must run on. The leader honours a pin while that worker is live and places the
//! partition by its strategy otherwise; removing a pin moves nothing by itself. Any process
//! with the fleet's KV can pin (a worker through [`crate::Worker::pin`], `parti pin`).

use crate::kv::KvStore;
use crate::Error;
use parti_core::codec::{self, PinValue};
use parti_core::{Bucket, KvOp, KvResult, PartitionId, WorkerId};
use std::collections::BTreeMap;

/// Pins `partition` to the worker with ID `worker`, for the whole fleet sharing `kv`.
pub async fn pin(kv: &dyn KvStore, partition: &PartitionId, worker: WorkerId) -> Result<(), Error> {
    write(kv, partition, Some(worker)).await
}

/// Removes `partition`'s pin (nothing happens if it has none).
pub async fn unpin(kv: &dyn KvStore, partition: &PartitionId) -> Result<(), Error> {
    write(kv, partition, None).await
}

/// Every pin of the fleet sharing `kv`. A pin that cannot be read is an error naming its key.
pub async fn pins(kv: &dyn KvStore) -> Result<BTreeMap<PartitionId, WorkerId>, Error> {
    let op = KvOp::List {
        prefix: codec::PIN_PREFIX.into(),
    };
    let entries = match kv.execute(Bucket::Assign, op).await {
        KvResult::Entries(entries) => entries,
        other => return Err(failed("listing the pins", other)),
    };
    entries
        .into_iter()
        .map(|e| {
            let id = PartitionId::parse(&e.key[codec::PIN_PREFIX.len()..])?;
            let value = codec::decode::<PinValue>("pin", &e.value)?;
            Ok((id, value.worker))
        })
        .collect()
}

/// Sets (`Some`) or removes (`None`) a pin.
pub(crate) async fn write(
    kv: &dyn KvStore,
    partition: &PartitionId,
    worker: Option<WorkerId>,
) -> Result<(), Error> {
    let key = codec::pin_key(partition);
    let op = match worker {
        Some(worker) => KvOp::Put {
            key,
            value: codec::encode(&PinValue {
                v: codec::VERSION,
                worker,
            }),
        },
        None => KvOp::Delete {
            key,
            revision: None,
        },
    };
    match kv.execute(Bucket::Assign, op).await {
        KvResult::Written { .. } => Ok(()),
        other => Err(failed(&format!("writing the pin of {partition}"), other)),
    }
}

fn failed(what: &str, result: KvResult) -> Error {
    match result {
        KvResult::TimedOut => Error::Nats(format!("{what} timed out (it may still land)")),
        KvResult::Failed(reason) => Error::Nats(format!("{what}: {reason}")),
        other => Error::Nats(format!("{what}: unexpected answer {other:?}")),
    }
}
