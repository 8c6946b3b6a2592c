//! Partition sources through real workers on NATS: the `StaticSource` (its operations, an empty
//! list, concurrent readers and writers while the leader reads it) and custom `PartitionSource`
//! implementations, including one that fails or panics: the worker reports it, keeps running,
//! and recovers once the source works again.

mod common;

use common::{ids, partitions, Cluster, DEADLINE};
use futures::future::BoxFuture;
use parti::{Event, Partition, PartitionSource, SourceError, State, StaticSource, Warning};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_source_lists_its_partitions_and_an_update_through_a_clone_reaches_the_workers() {
    let source = StaticSource::from(partitions(0..30));
    assert_eq!(*source.partitions(), partitions(0..30));
    assert_eq!(source.list().await.unwrap(), partitions(0..30));

    let cluster = Cluster::start("source-static", 3, source.clone()).await;
    cluster.wait_settled(&ids(&partitions(0..30))).await;

    // A snapshot taken before an update does not change; every clone sees the update.
    let before = source.partitions();
    let writer = source.clone();
    writer.update(partitions(10..40));
    assert_eq!(*before, partitions(0..30));
    assert_eq!(*source.partitions(), partitions(10..40));
    cluster
        .handle(cluster.leader())
        .refresh_partitions()
        .await
        .expect("refresh");
    cluster.wait_settled(&ids(&partitions(10..40))).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_source_leaves_workers_stable_with_nothing_until_an_update_and_refresh() {
    let source = StaticSource::new(Vec::new());
    let cluster = Cluster::start("source-empty", 3, source.clone()).await;

    // Every worker commits to the empty assignment and is Stable, with nothing to complain
    // about.
    let nothing = Default::default();
    common::wait_for(DEADLINE, "an empty generation is applied", || {
        cluster.check_settled(&nothing)?;
        match cluster.running().all(|m| m.handle.generation().is_some()) {
            true => Ok(()),
            false => Err("no generation applied yet".into()),
        }
    })
    .await;
    for m in cluster.running() {
        let warnings: Vec<Event> = m
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Warning(_) | Event::DriverWarning(_)))
            .collect();
        assert!(warnings.is_empty(), "warnings: {warnings:?}");
        assert!(m.handle.assignment().is_empty());
    }

    source.update(partitions(0..12));
    let follower = (cluster.leader() + 1) % 3;
    cluster
        .handle(follower)
        .refresh_partitions()
        .await
        .expect("refresh");
    cluster.wait_settled(&ids(&partitions(0..12))).await;
    for m in cluster.running() {
        assert_eq!(m.handle.assignment().len(), 4, "balanced");
    }
    cluster.stop_all().await;
}

/// Lists its inner source and counts the calls.
struct Counting {
    inner: StaticSource,
    calls: AtomicUsize,
}

impl PartitionSource for Counting {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.list()
    }
}

/// Is `list` one of the lists the writers write (`p0..p<n>` for n in 30, 35, ..., 50)?
fn is_whole_list(list: &[Partition]) -> bool {
    [30, 35, 40, 45, 50].contains(&list.len()) && list == partitions(0..list.len()).as_slice()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_source_with_10_readers_and_5_writers_never_shows_a_torn_list_while_workers_read_it()
{
    const ITERATIONS: usize = 50;
    let source = StaticSource::new(partitions(0..30));
    let counting = Arc::new(Counting {
        inner: source.clone(),
        calls: AtomicUsize::new(0),
    });
    let cluster = Cluster::start("source-concurrent", 3, counting.clone()).await;
    cluster.wait_settled(&ids(&partitions(0..30))).await;

    // Writers keep going for at least ITERATIONS rounds and until the leader has read the
    // source a few more times meanwhile (refreshes below), so the reads really overlap.
    let listed_before = counting.calls.load(Ordering::SeqCst);
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(15));
    let mut writers = Vec::new();
    for w in 0..5 {
        let (source, counting, start) = (source.clone(), counting.clone(), start.clone());
        writers.push(std::thread::spawn(move || {
            start.wait();
            let deadline = std::time::Instant::now() + DEADLINE;
            let mut i = 0;
            while i < ITERATIONS || counting.calls.load(Ordering::SeqCst) < listed_before + 5 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the leader never listed"
                );
                source.update(partitions(0..30 + 5 * ((w + i) % 5)));
                i += 1;
                std::thread::yield_now();
            }
            i
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..10 {
        let (source, done, start) = (source.clone(), done.clone(), start.clone());
        readers.push(std::thread::spawn(move || {
            start.wait();
            let mut reads = 0;
            while reads < ITERATIONS || !done.load(Ordering::SeqCst) {
                let snapshot = source.partitions();
                assert!(is_whole_list(&snapshot), "torn list of {}", snapshot.len());
                let listed = futures::executor::block_on(source.list()).expect("static");
                assert!(is_whole_list(&listed), "torn list of {}", listed.len());
                reads += 1;
                std::thread::yield_now();
            }
            reads
        }));
    }
    // Refreshes from a follower meanwhile (paced, not synchronising anything).
    let refresher = cluster.handle((cluster.leader() + 1) % 3).clone();
    while !writers.iter().all(|t| t.is_finished()) {
        refresher.refresh_partitions().await.expect("refresh");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for t in writers {
        assert!(t.join().expect("no writer panicked") >= ITERATIONS);
    }
    done.store(true, Ordering::SeqCst);
    for t in readers {
        assert!(t.join().expect("no reader saw a torn list") >= ITERATIONS);
    }

    // The workers kept up: the last list wins, with no warning on the way.
    source.update(partitions(0..45));
    refresher.refresh_partitions().await.expect("refresh");
    cluster.wait_settled(&ids(&partitions(0..45))).await;
    for m in cluster.running() {
        let warnings = m
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Warning(_)))
            .count();
        assert_eq!(warnings, 0, "no source or partition warnings");
    }
    cluster.stop_all().await;
}

/// A custom source: `count` tenants `tenant.<i>` (two keys), tenant i weighing 100 + 10 i.
struct Tenants {
    count: AtomicUsize,
}

impl Tenants {
    fn expected(count: usize) -> Vec<Partition> {
        (0..count)
            .map(|i| Partition::new(&["tenant", &i.to_string()], 100 + 10 * i as u64).unwrap())
            .collect()
    }
}

impl PartitionSource for Tenants {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        let count = self.count.load(Ordering::SeqCst);
        Box::pin(async move {
            // A real source would await IO here.
            tokio::task::yield_now().await;
            Ok(Tenants::expected(count))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_source_with_generated_multi_key_partitions_is_owned_exactly_once() {
    let tenants = Arc::new(Tenants {
        count: AtomicUsize::new(40),
    });
    let cluster = Cluster::start("source-custom", 3, tenants.clone()).await;
    cluster.wait_settled(&ids(&Tenants::expected(40))).await;
    let subjects: Vec<String> = cluster
        .handle(0)
        .assignment()
        .iter()
        .map(|p| p.keys().collect::<Vec<_>>().join("/"))
        .collect();
    assert!(subjects.iter().all(|s| s.starts_with("tenant/")));

    tenants.count.store(25, Ordering::SeqCst);
    cluster
        .handle(2)
        .refresh_partitions()
        .await
        .expect("refresh");
    cluster.wait_settled(&ids(&Tenants::expected(25))).await;
    cluster.stop_all().await;
}

/// A custom source that works, fails or panics, as the test says.
struct Flaky {
    mode: AtomicU8,
    inner: StaticSource,
}

const WORKS: u8 = 0;
const FAILS: u8 = 1;
const PANICS: u8 = 2;

impl PartitionSource for Flaky {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        match self.mode.load(Ordering::SeqCst) {
            WORKS => self.inner.list(),
            FAILS => Box::pin(async { Err(SourceError::new("database unreachable")) }),
            _ => panic!("source bug"),
        }
    }
}

/// Every `SourceFailed` reason reported so far, by any member.
fn source_failures(cluster: &Cluster) -> Vec<String> {
    cluster
        .members
        .iter()
        .flat_map(|m| m.events())
        .filter_map(|e| match e {
            Event::Warning(Warning::SourceFailed(reason)) => Some(reason),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_source_is_reported_and_retried_and_the_workers_recover_when_it_works_again() {
    let flaky = Arc::new(Flaky {
        mode: AtomicU8::new(FAILS),
        inner: StaticSource::new(partitions(0..30)),
    });
    let cluster = Cluster::start("source-failing", 3, flaky.clone()).await;

    // Failing from the start: reported, retried, nothing assigned, nobody stops.
    common::wait_until(DEADLINE, "the failure is reported twice", || {
        source_failures(&cluster).len() >= 2
    })
    .await;
    let reasons = source_failures(&cluster);
    assert!(reasons[0].contains("database unreachable"), "{reasons:?}");
    for m in cluster.running() {
        assert!(m.handle.assignment().is_empty());
        assert_ne!(m.handle.state(), State::Shutdown);
    }
    assert_eq!(cluster.running().count(), 3, "every worker keeps running");

    // It works again: the retry picks the list up without any refresh.
    flaky.mode.store(WORKS, Ordering::SeqCst);
    cluster.wait_settled(&ids(&partitions(0..30))).await;

    // It panics on a refresh: reported, and the assignment stays as it was (waited for, not
    // just looked at: a worker starved of CPU may fence itself for a moment and come back).
    let panics = || {
        source_failures(&cluster)
            .iter()
            .filter(|r| r.contains("source bug"))
            .count()
    };
    flaky.inner.update(partitions(0..40));
    flaky.mode.store(PANICS, Ordering::SeqCst);
    cluster
        .handle(cluster.leader())
        .refresh_partitions()
        .await
        .expect("refresh");
    common::wait_until(DEADLINE, "the panic is reported", || panics() > 0).await;
    common::wait_for(DEADLINE, "the previous assignment is kept", || {
        cluster.check_owned_once(&ids(&partitions(0..30)))
    })
    .await;

    // Fixed: the retry lists the new partitions.
    flaky.mode.store(WORKS, Ordering::SeqCst);
    cluster.wait_settled(&ids(&partitions(0..40))).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_leaving_while_the_source_fails_still_gets_its_partitions_reassigned() {
    let flaky = Arc::new(Flaky {
        mode: AtomicU8::new(WORKS),
        inner: StaticSource::new(partitions(0..30)),
    });
    let cluster = Cluster::start("source-failover", 3, flaky.clone()).await;
    let all = ids(&partitions(0..30));
    cluster.wait_settled(&all).await;

    // The source goes down, then the leader leaves for good: the new leader cannot list the
    // partitions, but the committed generation names every one of them.
    flaky.mode.store(FAILS, Ordering::SeqCst);
    let leader = cluster.leader();
    cluster.handle(leader).stop().await.expect("stop");
    cluster.wait_settled(&all).await;
    cluster.stop_all().await;
}
