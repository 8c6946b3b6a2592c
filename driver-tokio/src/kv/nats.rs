//! [`NatsKv`]: the KV backend over NATS JetStream Key-Value (async-nats 0.51).
//!
//! Choices, and why:
//! - **Writes are published directly** (JetStream publish with `Nats-Expected-Last-Subject-
//!   Sequence` and `KV-Operation: DEL` headers, exactly what async-nats's `Store` sends) rather
//!   than through `Store::{create, update, put, delete}`: `delete` does not return the revision
//!   of its marker, and `create`/`put` fold timeouts into kinds (`Publish`, `Ack`) that also
//!   cover failures known not to have landed. The publish error *kind* is mapped instead:
//!   wrong last sequence (server code 10071, also a CAS on a missing key) → `WrongRevision`;
//!   timed out or broken pipe (sent, no answer) → `TimedOut`; no stream, payload too large,
//!   too many acks in flight, other server errors → `Failed`.
//! - **Create** is put-if-absent like async-nats's: a CAS on revision 0; if that fails, read the
//!   key, and if its latest entry is a delete/purge marker, CAS on the marker's revision.
//! - **Every operation has one budget**, [`NatsOptions::request_timeout`]; past it the result is
//!   `TimedOut` (for a write: unknown outcome, the publish may still land). A listing takes
//!   three round trips at least (an ordered consumer for the keys, its messages, then the
//!   reads, 16 at a time), so it gets three budgets (`kv::budget`): with one, a link with a
//!   400 ms round trip could never list the leases and a worker never finished claiming an ID.
//! - **Watches are one ordered push consumer** with all filters (`filter_subjects`, server
//!   ≥ 2.10) rather than one stream per filter merged: a single consumer delivers in revision
//!   order across filters, so "the last revision delivered" is a sound resume point. A new
//!   watch uses deliver policy last-per-subject, a resume `ByStartSequence(after + 1)`. NATS
//!   refuses overlapping filters: covered filters are dropped, and if partly overlapping filters
//!   remain the consumer watches `>` and filters here with [`parti_core::filter_matches`].
//!   Markers are filtered per watch like [`MemoryKv`](super::MemoryKv) does (see the
//!   [module docs](super)); this also hides the `MaxAge` purge marker NATS writes when a delete
//!   marker in the leases bucket ages out (measured: a `Delete` is followed by a `Purge` of the
//!   same key one `max_age` later).
//! - **Watch recovery**: async-nats's ordered consumer notices a reconnect only if it is polled
//!   while the connection is down; otherwise it waits for two missed idle heartbeats (10 s), and
//!   its retries back off to 10 s. So the watch stream rebuilds its consumer itself, from the
//!   last revision received, as soon as the client reports a reconnect (measured: first entry
//!   ≈25 ms after a killed server is restarted). Missed-heartbeat recoveries of the ordered
//!   consumer are not reported as errors. Revisions at or below the last received are dropped,
//!   so a rebuild never delivers anything twice. A rebuild that keeps failing (≈5 s) ends the
//!   stream with an error, for the driver to report and rebuild.
//! - **Buckets** are created with `create_key_value` (idempotent for an identical config), and
//!   on any failure opened with `get_key_value`, with a few retries and backoff: several workers
//!   starting at once all succeed. An existing bucket whose settings would break the protocol
//!   (leases `max_age` ≠ lease TTL, no limit markers; assignment `max_age` set) is an error,
//!   not silently used: a shorter lease `max_age` than the workers' TTL would let the leader
//!   reassign partitions before their owner fenced itself.
//! - **Limit markers**: the leases bucket sets `limit_markers` (stream `allow_msg_ttl` and
//!   `subject_delete_marker_ttl`), so an expired lease becomes a `Purge` marker that watchers
//!   see. The server refuses a marker TTL under 1 s (error 10052), and the stream's `max_age`
//!   removes markers anyway (measured: a marker with a 6 s TTL in a bucket with a 1 s `max_age`
//!   is gone after ≈1 s), so the marker TTL is the lease TTL rounded up to whole seconds, at
//!   least 1 s. A watch resumed after its markers are gone does not see those removals: the
//!   core's own lease timers cover that.

use super::{check_filters, invalid_key, nats_watch, valid_key, KvStore, WatchError, WatchStream};
use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE};
use async_nats::jetstream::context::{
    CreateKeyValueErrorKind, GetStreamError, GetStreamErrorKind, PublishError, PublishErrorKind,
};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::ErrorCode;
use async_nats::{jetstream, Client, ConnectErrorKind, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use parti_core::{Bucket, Config, Entry, KvOp, KvResult, Operation};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Connection state changes: `true` when (re)connected, `false` when the connection is lost or
/// closed. Feed them to the core as `Input::Connection`. The first item is usually the `true` of
/// the initial connection.
pub type ConnectionEvents = mpsc::UnboundedReceiver<bool>;

/// How to reach and authenticate to NATS. `NatsOptions::default()` connects to
/// `nats://127.0.0.1:4222` without authentication.
#[derive(Clone)]
pub struct NatsOptions {
    /// Server URLs (`nats://host:port`, `tls://host:port`); more than one for a cluster, tried
    /// in random order. Credentials go in the fields below: a URL with a user part is refused
    /// (async-nats would ignore it).
    pub urls: Vec<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// NKey seed (`SU...`); surrounding whitespace (a file's newline) is ignored.
    pub nkey_seed: Option<String>,
    /// Path of a `.creds` file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server with; when set, TLS is required.
    pub tls_ca_file: Option<PathBuf>,
    /// How often the client pings the server. A silent partition is noticed after about three
    /// missed pings, so keep it short. Default 2 s.
    pub ping_interval: Duration,
    /// Budget of every KV operation and JetStream request (a listing gets three); past it a
    /// write's outcome is unknown. Default 2 s.
    pub request_timeout: Duration,
    /// Longest wait between two reconnect attempts (async-nats's default is 4 s). Default 1 s.
    pub reconnect_max_delay: Duration,
    /// Connection name shown by the server's monitoring. Default `parti`.
    pub name: Option<String>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            urls: vec!["nats://127.0.0.1:4222".into()],
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls_ca_file: None,
            ping_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(1),
            name: Some("parti".into()),
        }
    }
}

impl NatsOptions {
    /// Default options for one server URL.
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions {
            urls: vec![url.into()],
            ..NatsOptions::default()
        }
    }

    /// The server URLs, comma-separated, with any password or token written in them
    /// (`nats://user:pass@host`) shown as `***`: for logs and error messages.
    pub fn display_urls(&self) -> String {
        self.urls
            .iter()
            .map(|url| redact_url(url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects a plain client with these options (URLs, authentication, TLS, ping interval,
    /// request timeout, name), without creating or opening any bucket: for tools that only read.
    /// Fails at once, like [`NatsKv::connect`], if no server is reachable or the credentials
    /// are refused.
    pub async fn connect_client(&self) -> Result<Client, NatsError> {
        let options = self.client_options().await?;
        self.connect_with(options).await
    }

    /// Connects a plain client ([`NatsOptions::connect_client`]) and its JetStream context, every
    /// request bounded by `request_timeout` as in [`NatsKv::connect`], creating no bucket: for
    /// tools that read or administer a fleet's existing buckets ([`open_existing_bucket`]).
    pub async fn connect_jetstream(&self) -> Result<(Client, jetstream::Context), NatsError> {
        let client = self.connect_client().await?;
        let js = self.jetstream(client.clone());
        Ok((client, js))
    }

    /// The JetStream context over `client` that every connection of parti uses.
    fn jetstream(&self, client: Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(self.request_timeout)
            .build(client)
    }

    /// Checks the options and builds the async-nats options every connection shares:
    /// authentication, TLS, name, ping interval, request timeout.
    async fn client_options(&self) -> Result<ConnectOptions, NatsError> {
        let invalid = |reason: &str| Err(NatsError::InvalidOptions(reason.into()));
        if self.urls.is_empty() {
            return invalid("urls: at least one server URL is needed");
        }
        if self.ping_interval.is_zero() || self.request_timeout.is_zero() {
            return invalid("ping_interval and request_timeout must be above zero");
        }
        let mut options = match &self.creds_file {
            Some(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: path.clone(),
                    source,
                })?,
            None => ConnectOptions::new(),
        };
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (None, None) => {}
            _ => return invalid("user and password must be given together"),
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        Ok(options
            .ping_interval(self.ping_interval)
            .request_timeout(Some(self.request_timeout)))
    }

    /// [`NatsOptions::client_options`], reconnecting for ever; connection events go to
    /// `events`.
    async fn connect_options(
        &self,
        events: mpsc::UnboundedSender<bool>,
        reconnects: watch::Sender<u64>,
    ) -> Result<ConnectOptions, NatsError> {
        let max_delay = self.reconnect_max_delay;
        let reconnects = Arc::new(reconnects);
        Ok(self
            .client_options()
            .await?
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let events = events.clone();
                let reconnects = reconnects.clone();
                async move { on_event(&events, &reconnects, event) }
            }))
    }

    /// Connects to one of the URLs (tried in random order, like async-nats does); a refused
    /// authorization ends the attempt at once.
    async fn connect_with(&self, options: ConnectOptions) -> Result<Client, NatsError> {
        let urls = self
            .urls
            .iter()
            .map(|url| {
                let invalid = |reason: String| {
                    NatsError::InvalidOptions(format!("url {:?}: {reason}", redact_url(url)))
                };
                let addr = url
                    .parse::<ServerAddr>()
                    .map_err(|err| invalid(err.to_string()))?;
                // async-nats ignores them: refuse rather than connect without them.
                if addr.has_user_pass() || addr.password().is_some() {
                    return Err(invalid(
                        "credentials in a URL are not used: give them as user and password, \
                         or token"
                            .into(),
                    ));
                }
                Ok(addr)
            })
            .collect::<Result<Vec<_>, _>>()?;
        options.connect(urls).await.map_err(|source| {
            let urls = self.display_urls();
            match source.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    NatsError::Unauthorized { urls, source }
                }
                _ => NatsError::Connect { urls, source },
            }
        })
    }
}

/// `url` with the password (or token) in its user part replaced by `***`.
fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => {
            let userinfo = &url[start..start + at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{}{shown}{}", &url[..start], &url[start + at..])
        }
        None => url.to_string(),
    }
}

impl fmt::Debug for NatsOptions {
    /// Secrets are shown as `Some("***")`, and so is a password or token inside a URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("NatsOptions")
            .field("urls", &self.display_urls())
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("nkey_seed", &secret(&self.nkey_seed))
            .field("creds_file", &self.creds_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("ping_interval", &self.ping_interval)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("name", &self.name)
            .finish()
    }
}

/// async-nats's reconnect backoff (0, then 2^(n-1) ms), capped at `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(40);
    Duration::from_millis(1u64 << exp).min(max)
}

fn on_event(events: &mpsc::UnboundedSender<bool>, reconnects: &watch::Sender<u64>, event: Event) {
    match event {
        Event::Connected => {
            tracing::info!("nats connected");
            reconnects.send_modify(|n| *n += 1);
            let _ = events.send(true);
        }
        Event::Disconnected => {
            tracing::warn!("nats disconnected");
            let _ = events.send(false);
        }
        Event::Closed => {
            tracing::warn!("nats connection closed");
            let _ = events.send(false);
        }
        Event::LameDuckMode => tracing::info!("nats server entered lame duck mode"),
        Event::SlowConsumer(sid) => tracing::warn!(sid, "nats slow consumer"),
        Event::ServerError(err) => tracing::warn!(%err, "nats server error"),
        Event::ClientError(err) => tracing::warn!(%err, "nats client error"),
        Event::Draining => {}
    }
}

/// Why [`NatsKv::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The options are unusable (names what is wrong).
    #[error("invalid nats options: {0}")]
    InvalidOptions(String),
    /// The credentials file could not be read.
    #[error("cannot read credentials file {path:?}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// No connection could be made (unreachable, timed out, TLS).
    #[error("cannot connect to nats at {urls}: {source}")]
    Connect {
        /// The URLs tried, comma-separated (see [`NatsOptions::display_urls`]).
        urls: String,
        /// What async-nats reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A server was reached but authorization failed: it refused the credentials given (or
    /// wanted some), or they could not be used (an nkey seed that cannot sign).
    #[error("authorization failed at nats {urls}: {source}")]
    Unauthorized {
        /// The URLs tried, comma-separated (see [`NatsOptions::display_urls`]).
        urls: String,
        /// What async-nats reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A bucket could neither be created nor opened.
    #[error("cannot create or open bucket {bucket}: {reason}")]
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// The last error seen.
        reason: String,
    },
    /// A bucket exists with a setting parti cannot work with.
    #[error("bucket {bucket} exists with {field} = {existing}, but this worker needs {wanted}")]
    BucketMismatch {
        /// The bucket's name.
        bucket: String,
        /// The setting.
        field: &'static str,
        /// Its value in the existing bucket.
        existing: String,
        /// The value this worker's configuration needs.
        wanted: String,
    },
}

/// The KV backend over NATS JetStream; cheap to clone (all clones share one connection).
#[derive(Clone)]
pub struct NatsKv {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    js: jetstream::Context,
    leases: kv::Store,
    assign: kv::Store,
    request_timeout: Duration,
    /// Bumped on every (re)connection; watches rebuild their consumer when it changes.
    reconnects: watch::Receiver<u64>,
    /// Keeps `reconnects` open when nobody bumps it ([`NatsKv::from_stores`]).
    _reconnects_tx: Option<watch::Sender<u64>>,
}

impl NatsKv {
    /// Connects, then creates (or opens) `<prefix>-leases` and `<prefix>-assign`.
    ///
    /// Fails if no server is reachable now (it does not wait for one), at once on refused
    /// credentials ([`NatsError::Unauthorized`]), or if a bucket exists with settings that
    /// contradict `config` (see the module docs). Once connected, the client reconnects for
    /// ever; the returned events say when it is up.
    pub async fn connect(
        options: &NatsOptions,
        config: &Config,
    ) -> Result<(NatsKv, ConnectionEvents), NatsError> {
        // Unbounded: one message per connect or disconnect of the client, read by the
        // worker's loop as they come.
        let (tx, rx) = mpsc::unbounded_channel();
        let (reconnects_tx, reconnects) = watch::channel(0);
        let connect_options = options.connect_options(tx, reconnects_tx).await?;
        let client = options.connect_with(connect_options).await?;
        let js = options.jetstream(client.clone());
        let leases = open_bucket(&js, leases_config(config), config).await?;
        let assign = open_bucket(&js, assign_config(config), config).await?;
        let inner = Inner {
            client,
            js,
            leases,
            assign,
            request_timeout: options.request_timeout,
            reconnects,
            _reconnects_tx: None,
        };
        Ok((
            NatsKv {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// Wraps buckets opened elsewhere, for tools that must not create them (`parti pin` binds
    /// a fleet's existing buckets with `get_key_value`). Operations get the `request_timeout`
    /// budget; watches are not rebuilt on reconnects (no [`ConnectionEvents`] are kept).
    pub fn from_stores(
        client: Client,
        js: jetstream::Context,
        leases: kv::Store,
        assign: kv::Store,
        request_timeout: Duration,
    ) -> NatsKv {
        let (tx, reconnects) = watch::channel(0);
        NatsKv {
            inner: Arc::new(Inner {
                client,
                js,
                leases,
                assign,
                request_timeout,
                reconnects,
                _reconnects_tx: Some(tx),
            }),
        }
    }

    /// The underlying client, to share the connection (e.g. for partition subscriptions).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The JetStream context the buckets were opened with.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    fn store(&self, bucket: Bucket) -> &kv::Store {
        match bucket {
            Bucket::Leases => &self.inner.leases,
            Bucket::Assign => &self.inner.assign,
        }
    }

    async fn run(&self, bucket: Bucket, op: KvOp) -> KvResult {
        if !matches!(op, KvOp::List { .. }) && !valid_key(op.key()) {
            return invalid_key(op.key());
        }
        let store = self.store(bucket);
        match op {
            KvOp::Create { key, value } => self.create(store, &key, value.into()).await,
            KvOp::Update {
                key,
                value,
                revision,
            } => written(
                self.publish(store, &key, value.into(), Some(revision), false)
                    .await,
            ),
            KvOp::Put { key, value } => {
                written(self.publish(store, &key, value.into(), None, false).await)
            }
            KvOp::Delete { key, revision } => written(
                self.publish(store, &key, Bytes::new(), revision, true)
                    .await,
            ),
            KvOp::Get { key } => match store.entry(key).await {
                Ok(entry) => KvResult::Value(entry.and_then(|e| live_entry(bucket, e))),
                Err(err) => entry_failure(&err),
            },
            KvOp::List { prefix } => self.list(bucket, store, &prefix).await,
        }
    }

    /// Publishes a value (or a delete marker) to `key`, optionally as a CAS on its last revision.
    async fn publish(
        &self,
        store: &kv::Store,
        key: &str,
        value: Bytes,
        expected: Option<u64>,
        delete: bool,
    ) -> Result<u64, PublishError> {
        let prefix = store.put_prefix.as_deref().unwrap_or(&store.prefix);
        let subject = format!("{prefix}{key}");
        let mut headers = HeaderMap::new();
        if let Some(revision) = expected {
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, revision.to_string());
        }
        if delete {
            headers.insert(KV_OPERATION, "DEL");
        }
        let ack = self
            .inner
            .js
            .publish_with_headers(subject, headers, value)
            .await?
            .await?;
        Ok(ack.sequence)
    }

    /// Put-if-absent, also over a delete or purge marker.
    async fn create(&self, store: &kv::Store, key: &str, value: Bytes) -> KvResult {
        let mut expected = 0;
        for _ in 0..4 {
            match self
                .publish(store, key, value.clone(), Some(expected), false)
                .await
            {
                Ok(revision) => return KvResult::Written { revision },
                Err(err) if err.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(err) => return publish_failure(&err),
            }
            match store.entry(key).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                    return KvResult::AlreadyExists
                }
                Ok(Some(marker)) => expected = marker.revision,
                Ok(None) => expected = 0,
                Err(err) => return entry_failure(&err),
            }
        }
        KvResult::Failed("create kept racing with other writers".into())
    }

    /// The live entries of the keys starting with `prefix`, sorted by key.
    ///
    /// The keys come from the stream's subject list (one paged request), not from
    /// `Store::keys`: that ordered consumer ends only when it sees nothing pending, which under
    /// steady writes (every lease renewed each heartbeat) and a slow link never happens, so a
    /// worker 150 ms away could never list the leases and never claim an ID.
    async fn list(&self, bucket: Bucket, store: &kv::Store, prefix: &str) -> KvResult {
        let subjects = match store
            .stream
            .info_with_subjects(format!("{}>", store.prefix))
            .await
        {
            Ok(subjects) => subjects,
            Err(err)
                if err.kind() == async_nats::jetstream::context::RequestErrorKind::TimedOut =>
            {
                return KvResult::TimedOut
            }
            Err(err) => return KvResult::Failed(format!("listing keys: {err}")),
        };
        let mut keys: Vec<String> = match subjects.try_collect::<Vec<(String, usize)>>().await {
            Ok(subjects) => subjects
                .into_iter()
                .filter_map(|(subject, _)| subject.strip_prefix(&store.prefix).map(str::to_owned))
                .collect(),
            Err(err) => return KvResult::Failed(format!("listing keys: {err}")),
        };
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        let reads: Vec<_> = futures::stream::iter(keys)
            .map(|key| store.entry(key))
            .buffered(16)
            .collect()
            .await;
        let mut entries = Vec::with_capacity(reads.len());
        for read in reads {
            match read {
                Ok(entry) => entries.extend(entry.and_then(|e| live_entry(bucket, e))),
                Err(err) => return entry_failure(&err),
            }
        }
        KvResult::Entries(entries)
    }
}

impl KvStore for NatsKv {
    fn execute(&self, bucket: Bucket, op: KvOp) -> BoxFuture<'static, KvResult> {
        let this = self.clone();
        async move {
            let budget = super::budget(this.inner.request_timeout, &op);
            tokio::time::timeout(budget, this.run(bucket, op))
                .await
                .unwrap_or(KvResult::TimedOut)
        }
        .boxed()
    }

    fn watch(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<WatchStream, WatchError>> {
        let this = self.clone();
        async move {
            let filters = check_filters(&filters)?;
            let budget = this.inner.request_timeout * 2;
            let start = nats_watch::start(
                this.store(bucket).clone(),
                this.inner.client.clone(),
                this.inner.reconnects.clone(),
                bucket,
                filters,
                after,
            );
            tokio::time::timeout(budget, start)
                .await
                .map_err(|_| WatchError("timed out starting the watch".into()))?
        }
        .boxed()
    }
}

impl fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsKv")
            .field("leases", &self.inner.leases.name)
            .field("assign", &self.inner.assign.name)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The `KV-Operation` header async-nats's KV uses for delete and purge markers.
pub(super) const KV_OPERATION: &str = "KV-Operation";

fn leases_config(config: &Config) -> kv::Config {
    let marker_ttl = Duration::from_secs(config.lease_ttl.as_secs_f64().ceil().max(1.0) as u64);
    kv::Config {
        bucket: config.leases_bucket(),
        description: "parti worker and leader leases".into(),
        history: 1,
        max_age: config.lease_ttl,
        storage: StorageType::File,
        num_replicas: usize::from(config.replicas.max(1)),
        limit_markers: Some(marker_ttl),
        ..Default::default()
    }
}

fn assign_config(config: &Config) -> kv::Config {
    kv::Config {
        bucket: config.assign_bucket(),
        description: "parti assignments and operator intents".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: usize::from(config.replicas.max(1)),
        ..Default::default()
    }
}

/// Creates the bucket, or opens it if it exists (tolerates several workers creating it at
/// once), then checks that its settings fit `config`.
async fn open_bucket(
    js: &jetstream::Context,
    wanted: kv::Config,
    config: &Config,
) -> Result<kv::Store, NatsError> {
    let mut reason = String::new();
    for attempt in 0..6u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
        }
        let create_err = match js.create_key_value(wanted.clone()).await {
            Ok(store) => {
                return room_for_consumers(js, check_bucket(store, &wanted, config)?, config).await
            }
            Err(err) => err,
        };
        let permanent = matches!(
            create_err.kind(),
            CreateKeyValueErrorKind::InvalidStoreName
                | CreateKeyValueErrorKind::TooLongHistory
                | CreateKeyValueErrorKind::LimitMarkersNotSupported
        );
        match js.get_key_value(&wanted.bucket).await {
            Ok(store) => {
                return room_for_consumers(js, check_bucket(store, &wanted, config)?, config).await
            }
            Err(open_err) => {
                reason = format!("create: {create_err}; open: {open_err}");
                if permanent {
                    break;
                }
                tracing::debug!(bucket = %wanted.bucket, %reason, "bucket not ready, retrying");
            }
        }
    }
    Err(NatsError::Bucket {
        bucket: wanted.bucket,
        reason,
    })
}

/// Binds to an existing bucket, never creating it: `Ok(None)` if it does not exist,
/// [`NatsError::Bucket`] if it cannot be read for another reason. For tools that must not
/// create a fleet's buckets (`parti status`, `parti pin`); workers use [`NatsKv::connect`].
pub async fn open_existing_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<kv::Store>, NatsError> {
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(Some(store)),
        Err(e) => {
            let not_found = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<GetStreamError>())
                .is_some_and(|s| {
                    matches!(s.kind(), GetStreamErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
                });
            if not_found {
                return Ok(None);
            }
            Err(NatsError::Bucket {
                bucket: bucket.to_string(),
                reason: e.to_string(),
            })
        }
    }
}

/// Consumers a bucket must allow for a fleet whose IDs range over `config`'s: every worker
/// watches each bucket through at most two consumers (the leader's extra watches included),
/// plus room for operators' tools (`parti status`, a raw watcher).
pub fn consumers_needed(config: &Config) -> i32 {
    let ids = i64::from(config.id_max) - i64::from(config.id_min) + 1;
    (2 * ids + 100).min(i64::from(i32::MAX)) as i32
}

/// The consumer limit a stream gets when its config leaves it unset (0 or less): nats-server
/// 2.15 applies 1,000; older servers have none, so 1,000 is the lowest a fleet can count on.
const SERVER_DEFAULT_MAX_CONSUMERS: i32 = 1000;

/// Raises the bucket stream's `max_consumers` to [`consumers_needed`] if it is lower. Without
/// this, on nats-server 2.15 the 500th or so worker of a fleet whose ID range exceeds 450
/// cannot create its watch and never joins. Several workers may raise it at once (the update
/// is idempotent); if it still fails after a few tries (no permission, a cluster without a
/// stream leader), the worker goes on with a warning: its watches then report the limit.
async fn room_for_consumers(
    js: &jetstream::Context,
    store: kv::Store,
    config: &Config,
) -> Result<kv::Store, NatsError> {
    let needed = consumers_needed(config);
    let existing = store.stream.cached_info().config.clone();
    let was = existing.max_consumers;
    let effective = if was > 0 {
        was
    } else {
        SERVER_DEFAULT_MAX_CONSUMERS
    };
    if effective >= needed {
        return Ok(store);
    }
    let raised = jetstream::stream::Config {
        max_consumers: needed,
        ..existing
    };
    let mut last_error = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        match js.update_stream(raised.clone()).await {
            Ok(_) => {
                tracing::info!(bucket = %store.name, was, now = needed, "raised the bucket's consumer limit");
                return Ok(store);
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    tracing::warn!(
        bucket = %store.name,
        was,
        needed,
        error = %last_error,
        "could not raise the bucket's consumer limit (max_consumers) to what the ID range needs: \
         workers beyond it cannot watch; raise it on the stream or narrow id_min..=id_max"
    );
    Ok(store)
}

/// Refuses an existing bucket whose settings would break the protocol.
fn check_bucket(
    store: kv::Store,
    wanted: &kv::Config,
    config: &Config,
) -> Result<kv::Store, NatsError> {
    let existing = &store.stream.cached_info().config;
    let mismatch = |field, existing: String, wanted: String| {
        Err(NatsError::BucketMismatch {
            bucket: store.name.clone(),
            field,
            existing,
            wanted,
        })
    };
    if existing.max_age != wanted.max_age {
        return mismatch(
            "max_age",
            format!("{:?}", existing.max_age),
            format!("{:?}", wanted.max_age),
        );
    }
    if wanted.limit_markers.is_some()
        && (!existing.allow_message_ttl || existing.subject_delete_marker_ttl.is_none())
    {
        return mismatch("limit_markers", "off".into(), "on".into());
    }
    if existing.storage != StorageType::File {
        tracing::warn!(
            bucket = %store.name,
            "bucket uses memory storage: it vanishes if the server restarts"
        );
    }
    if existing.num_replicas != usize::from(config.replicas.max(1)) {
        tracing::warn!(
            bucket = %store.name,
            existing = existing.num_replicas,
            wanted = config.replicas,
            "bucket has a different number of replicas"
        );
    }
    Ok(store)
}

fn written(result: Result<u64, PublishError>) -> KvResult {
    match result {
        Ok(revision) => KvResult::Written { revision },
        Err(err) => publish_failure(&err),
    }
}

/// Maps a failed publish by its kind.
fn publish_failure(err: &PublishError) -> KvResult {
    match err.kind() {
        PublishErrorKind::WrongLastSequence => KvResult::WrongRevision,
        // Sent (or maybe sent) without an answer: the write may still land.
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => KvResult::TimedOut,
        _ => KvResult::Failed(err.to_string()),
    }
}

fn entry_failure(err: &kv::EntryError) -> KvResult {
    match err.kind() {
        kv::EntryErrorKind::TimedOut => KvResult::TimedOut,
        _ => KvResult::Failed(format!("reading: {err}")),
    }
}

/// The entry if it is a live value (not a delete or purge marker).
fn live_entry(bucket: Bucket, entry: kv::Entry) -> Option<Entry> {
    (entry.operation == kv::Operation::Put).then(|| Entry {
        bucket,
        key: entry.key,
        revision: entry.revision,
        operation: Operation::Put,
        value: entry.value.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_in_urls_are_redacted() {
        assert_eq!(
            redact_url("nats://a:secret@10.0.0.1:4222"),
            "nats://a:***@10.0.0.1:4222"
        );
        assert_eq!(redact_url("tls://tok@host/x@y"), "tls://***@host/x@y");
        assert_eq!(redact_url("u:p@host:4222"), "u:***@host:4222");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
