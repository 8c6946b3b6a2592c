//! Setting a chaos run up and looking into it: the `parti` binary (built with this example),
//! and the JetStream work-queue stream the `--jetstream` workers consume.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// The work-queue stream of `--jetstream` runs.
pub const STREAM: &str = "WORK";

/// The `parti` binary: `$PARTI_BIN`, or built now (same profile as this example) and taken
/// from the target directory.
pub fn parti_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("PARTI_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("PARTI_BIN={} is not a file", bin.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this example: {e}"))?;
    // <target>/<profile>/examples/chaos -> <target>/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    // `cargo run` describes this example's package in the environment; passed on, it makes
    // build scripts that watch it (ring's) rerun and rebuild the TLS stack every time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref())
        {
            build.env_remove(key.as_ref());
        }
    }
    // With this example in the same build (and the features its dev-dependency on this crate
    // turns on, the binary's `cli` among them): the binary then gets the same (dev-unified)
    // dependency features as the example, and cargo finds everything up to date instead of
    // rebuilding the dependencies for the other feature set.
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "parti",
            "--features",
            "cli,testing",
            "--bin",
            "parti",
            "--example",
            "chaos",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build parti (or set PARTI_BIN): {e}"))?;
    if !status.success() {
        return Err(
            "cargo build -p parti --features cli --bin parti failed (or set PARTI_BIN)".into(),
        );
    }
    let bin = profile_dir.join("parti");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("no parti binary at {}", bin.display()))
    }
}

/// Creates the work-queue stream (replicated on every server), retrying until `deadline`.
pub async fn create_stream(urls: &[String], replicas: usize) -> Result<(), String> {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    let client = async_nats::connect(urls.to_vec())
        .await
        .map_err(|e| format!("cannot connect to create the stream: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let config = Config {
        name: STREAM.into(),
        subjects: vec!["work.>".into()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.create_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("cannot create the stream {STREAM}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Messages left in the work-queue stream; `None` if it cannot be asked.
pub async fn stream_messages(urls: &[String]) -> Option<u64> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(urls.to_vec())
        .await
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(STREAM).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// The consumers on the work-queue stream, one line each (for a run that does not settle).
pub async fn describe_consumers(urls: &[String]) -> Vec<String> {
    use futures::StreamExt;
    let Ok(client) = async_nats::connect(urls.to_vec()).await else {
        return vec!["(cannot connect)".into()];
    };
    let js = async_nats::jetstream::new(client);
    let Ok(stream) = js.get_stream(STREAM).await else {
        return vec!["(no stream)".into()];
    };
    let mut out = Vec::new();
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        out.push(format!(
            "{}: filters {:?}, waiting pulls {}, pending {}, ack pending {}, created {}",
            info.name,
            info.config.filter_subjects,
            info.num_waiting,
            info.num_pending,
            info.num_ack_pending,
            info.created
        ));
    }
    out
}
