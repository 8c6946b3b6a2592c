//! `parti pin` / `parti unpin`: an operator's pin of a partition to a worker, written into the
//! fleet's existing assign bucket (nothing is created: a prefix no fleet uses is an error). The
//! leader moves a pinned partition to its worker while that worker is live.

use crate::common::{nats_error, NatsArgs};
use crate::fleet::{check_prefix, open_bucket};
use crate::{CliError, CliResult};
use parti::kv::{KvStore, NatsKv};
use parti::parti_core::{Bucket, KvOp, KvResult};
use parti::{PartitionId, WorkerId};

/// Arguments of `parti pin`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("nats", |a| a.required(true)))]
pub struct PinArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Prefix of the fleet's KV buckets.
    #[arg(long, default_value_t = parti::Config::default().bucket_prefix, value_name = "P")]
    prefix: String,
    /// The partition to pin (its ID, keys joined by '.').
    #[arg(value_name = "PARTITION")]
    partition: String,
    /// The worker to run it on (its ID, as `parti status` lists it).
    #[arg(value_name = "WORKER_ID")]
    worker: u32,
}

/// Arguments of `parti unpin`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("nats", |a| a.required(true)))]
pub struct UnpinArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Prefix of the fleet's KV buckets.
    #[arg(long, default_value_t = parti::Config::default().bucket_prefix, value_name = "P")]
    prefix: String,
    /// The partition to unpin (its ID, keys joined by '.').
    #[arg(value_name = "PARTITION")]
    partition: String,
}

/// Runs `parti pin`.
pub async fn run_pin(args: PinArgs) -> CliResult {
    let partition = parse_partition(&args.partition)?;
    let worker = WorkerId(args.worker);
    let fleet = FleetKv::open(&args.nats, &args.prefix).await?;
    parti::pins::pin(&fleet.kv, &partition, worker)
        .await
        .map_err(|e| CliError::runtime(format!("cannot pin {partition}: {e}")))?;
    let note = match fleet.leased(worker).await {
        Some(false) => " (it has no live lease: the pin applies once it runs)",
        _ => "",
    };
    say!("pinned {partition} to worker {worker}{note}");
    Ok(())
}

/// Runs `parti unpin`.
pub async fn run_unpin(args: UnpinArgs) -> CliResult {
    let partition = parse_partition(&args.partition)?;
    let fleet = FleetKv::open(&args.nats, &args.prefix).await?;
    parti::pins::unpin(&fleet.kv, &partition)
        .await
        .map_err(|e| CliError::runtime(format!("cannot unpin {partition}: {e}")))?;
    say!("unpinned {partition}");
    Ok(())
}

/// A partition ID from the command line; a bad one is a usage error naming it.
fn parse_partition(s: &str) -> CliResult<PartitionId> {
    PartitionId::parse(s).map_err(|e| CliError::usage(format!("{s:?} is not a partition ID: {e}")))
}

/// A fleet's KV, bound to its buckets as they exist on the server.
struct FleetKv {
    kv: NatsKv,
}

impl FleetKv {
    /// Connects and binds to `<prefix>-leases` and `<prefix>-assign` without creating them;
    /// if either is missing, no fleet uses `prefix` there and that is the error.
    async fn open(nats: &NatsArgs, prefix: &str) -> CliResult<FleetKv> {
        check_prefix(prefix)?;
        let options = nats.options("parti-cli")?;
        let urls = options.display_urls();
        let (client, js) = options.connect_jetstream().await.map_err(|e| {
            nats_error(&urls, &e).unwrap_or_else(|| CliError::runtime(format!("{urls}: {e}")))
        })?;
        let names = [format!("{prefix}-leases"), format!("{prefix}-assign")];
        let leases = open_bucket(&js, &urls, &names[0]).await?;
        let assign = open_bucket(&js, &urls, &names[1]).await?;
        match (leases, assign) {
            (Some(leases), Some(assign)) => Ok(FleetKv {
                kv: NatsKv::from_stores(client, js, leases, assign, options.request_timeout),
            }),
            (leases, assign) => {
                let missing = [leases.is_none(), assign.is_none()]
                    .into_iter()
                    .zip(names)
                    .filter_map(|(gone, name)| gone.then_some(name));
                Err(no_fleet(&urls, prefix, missing.collect()))
            }
        }
    }

    /// Whether `worker` holds a lease now; `None` if that cannot be read.
    async fn leased(&self, worker: WorkerId) -> Option<bool> {
        let key = format!("worker.{worker}");
        match self.kv.execute(Bucket::Leases, KvOp::Get { key }).await {
            KvResult::Value(entry) => Some(entry.is_some()),
            _ => None,
        }
    }
}

/// The error for a prefix whose buckets (`missing`) are not on the server at `urls`.
fn no_fleet(urls: &str, prefix: &str, missing: Vec<String>) -> CliError {
    let missing = match missing.as_slice() {
        [one] => format!("bucket {one} does not exist"),
        many => format!("buckets {} do not exist", many.join(" and ")),
    };
    CliError::runtime(format!(
        "no fleet with prefix {prefix} exists on {urls}: {missing} (check --prefix; a worker \
         creates them when it first runs)"
    ))
}
