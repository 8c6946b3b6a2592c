//! Partition sources: `StaticSource` lists what it was given and is updated safely while read;
//! custom sources plug in through the object-safe `PartitionSource` trait and may fail.

use futures::future::BoxFuture;
use parti::{Partition, PartitionSource, SourceError, StaticSource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn parts(prefix: &str, n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::single(&format!("{prefix}{i}")).unwrap())
        .collect()
}

#[tokio::test]
async fn static_source_lists_what_it_was_given_and_updates() {
    let source = StaticSource::new(parts("a", 3));
    assert_eq!(source.list().await.unwrap(), parts("a", 3));
    assert_eq!(*source.partitions(), parts("a", 3));

    source.update(parts("b", 5));
    assert_eq!(source.list().await.unwrap(), parts("b", 5));
}

#[tokio::test]
async fn static_source_clones_share_one_list() {
    let source = StaticSource::new(parts("a", 2));
    let given_to_worker = source.clone();
    source.update(parts("c", 4));
    assert_eq!(given_to_worker.list().await.unwrap(), parts("c", 4));
}

#[tokio::test]
async fn static_source_snapshot_is_not_changed_by_later_updates() {
    let source = StaticSource::new(parts("a", 2));
    let before = source.partitions();
    source.update(parts("b", 7));
    assert_eq!(*before, parts("a", 2));
}

#[tokio::test]
async fn empty_static_source_lists_nothing() {
    let source = StaticSource::default();
    assert!(source.list().await.unwrap().is_empty());
    let source = StaticSource::new(Vec::new());
    assert!(source.list().await.unwrap().is_empty());
    source.update(parts("a", 1));
    source.update(Vec::new());
    assert!(source.list().await.unwrap().is_empty());
}

#[test]
fn concurrent_readers_never_see_a_torn_list() {
    // Every list written is `n` partitions all named after one round `r`: a reader that saw a
    // mix of rounds, or a length other than the round's, would have seen a torn write.
    let list_of = |r: usize| parts(&format!("r{r}x"), 1 + r % 7);
    let source = StaticSource::new(list_of(0));
    std::thread::scope(|s| {
        for w in 0..5 {
            let source = source.clone();
            s.spawn(move || {
                for i in 0..50 {
                    source.update(list_of(w * 50 + i));
                }
            });
        }
        for _ in 0..10 {
            let source = source.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    let list = futures::executor::block_on(source.list()).unwrap();
                    let first = list[0].id().as_str().to_owned();
                    let round: usize = first[1..first.find('x').unwrap()].parse().unwrap();
                    assert_eq!(list, list_of(round), "torn read");
                }
            });
        }
    });
}

/// A source reading from a "database": counts its calls.
struct Database {
    rows: Vec<(String, u64)>,
    calls: AtomicUsize,
}

impl PartitionSource for Database {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.rows
                .iter()
                .map(|(name, weight)| Ok(Partition::new(&["db", name.as_str()], *weight)?))
                .collect()
        })
    }
}

#[tokio::test]
async fn custom_source_is_usable_as_a_trait_object() {
    let db = Arc::new(Database {
        rows: vec![("orders".into(), 300), ("users".into(), 100)],
        calls: AtomicUsize::new(0),
    });
    let source: Arc<dyn PartitionSource> = db.clone();
    let list = source.list().await.unwrap();
    assert_eq!(
        list,
        vec![
            Partition::new(&["db", "orders"], 300).unwrap(),
            Partition::new(&["db", "users"], 100).unwrap()
        ]
    );
    assert_eq!(list[0].subject(), "db.orders");
    assert_eq!(db.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn custom_source_errors_are_returned_not_panicked() {
    let bad_key = Database {
        rows: vec![("has space".into(), 1)],
        calls: AtomicUsize::new(0),
    };
    let err = bad_key.list().await.unwrap_err();
    assert!(err.to_string().contains("has space"), "{err}");

    struct Down;
    impl PartitionSource for Down {
        fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
            Box::pin(async { Err(SourceError::new("database unreachable")) })
        }
    }
    assert_eq!(
        Down.list().await.unwrap_err(),
        SourceError("database unreachable".into())
    );
}
