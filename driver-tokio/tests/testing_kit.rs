//! The test kit itself: `FaultProxy` passes, delays, blackholes and resets a real NATS
//! connection; `NatsCluster` starts three routed servers that replicate a stream, names the
//! stream's leader and survives the restart of a node.

use parti::testing::{FaultMode, FaultProxy, NatsCluster, NatsServer};
use std::time::{Duration, Instant};

async fn connect(url: &str, timeout: Duration) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

async fn client(url: &str) -> async_nats::Client {
    connect(url, Duration::from_secs(5))
        .await
        .expect("connect through the proxy")
}

/// The round trip of a request the server itself answers (JetStream's account info).
async fn round_trip(client: &async_nats::Client) -> Result<Duration, String> {
    let start = Instant::now();
    let request = client.request("$JS.API.INFO", "".into());
    match tokio::time::timeout(Duration::from_secs(2), request).await {
        Ok(Ok(_)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_passes_delays_blackholes_and_heals_a_nats_connection() {
    let server = NatsServer::start().expect("nats-server");
    let proxy = FaultProxy::start(&server.url()).await.expect("proxy");
    let nats = client(&proxy.url()).await;
    round_trip(&nats).await.expect("a round trip passes");

    proxy.set(FaultMode::Delay {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(20),
    });
    let slow = round_trip(&nats).await.expect("a delayed round trip");
    assert!(
        slow >= Duration::from_millis(200),
        "both directions delayed: {slow:?}"
    );

    proxy.set(FaultMode::Blackhole);
    assert!(
        round_trip(&nats).await.is_err(),
        "a blackholed ping has no answer"
    );
    assert_eq!(proxy.mode(), FaultMode::Blackhole);

    proxy.set(FaultMode::Pass);
    // The client may have given the silent connection up and reconnected meanwhile: either
    // way a round trip passes again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while round_trip(&nats).await.is_err() {
        assert!(Instant::now() < deadline, "no round trip after the heal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_reset_drops_the_connection_and_refuses_new_ones() {
    let server = NatsServer::start().expect("nats-server");
    let proxy = FaultProxy::start(&server.url()).await.expect("proxy");
    let nats = client(&proxy.url()).await;
    round_trip(&nats).await.expect("a round trip passes");

    proxy.set(FaultMode::Reset);
    let refused = connect(&proxy.url(), Duration::from_secs(1)).await;
    assert!(refused.is_err(), "a new connection is reset");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nats.connection_state() == async_nats::connection::State::Connected {
        assert!(
            Instant::now() < deadline,
            "the open connection was not reset"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_replicates_a_stream_names_its_leader_and_restarts_a_node() {
    let mut cluster = NatsCluster::start(3).await.expect("three routed servers");
    assert_eq!(cluster.urls().len(), 3);
    let js = async_nats::jetstream::new(client(&cluster.url(0)).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KIT".into(),
        subjects: vec!["kit.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("an R3 stream");
    let leader = cluster.stream_leader("KIT").await.expect("a leader");
    assert!(leader < 3);

    cluster.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        match cluster.stream_leader("KIT").await {
            Some(n) if n != leader => break n,
            _ => assert!(Instant::now() < deadline, "no new leader after the kill"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(next, leader);
    cluster.restart(leader).expect("restart the killed node");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.stream_replicas_current("KIT").await {
        assert!(
            Instant::now() < deadline,
            "the restarted node never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
