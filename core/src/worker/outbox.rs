//! What a step produces: actions for the driver, events for the application, and the purpose
//! of every KV request still outstanding. Shared by the worker and its leader role.

use super::Purpose;
use crate::{Action, Bucket, Event, KvOp, KvResult, RequestId, Warning, WatchId};
use std::collections::{BTreeMap, VecDeque};

/// The worker's outputs and its outstanding requests.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    next_request: u64,
    next_watch: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// What each outstanding KV request is for; its result is routed by this.
    pub(crate) pending: BTreeMap<RequestId, Purpose>,
}

impl Outbox {
    /// Queues a KV operation and remembers what it is for.
    pub(crate) fn send_kv(&mut self, bucket: Bucket, op: KvOp, purpose: Purpose) -> RequestId {
        let id = self.new_request();
        self.pending.insert(id, purpose);
        self.actions.push_back(Action::Kv { id, bucket, op });
        id
    }

    /// A fresh request ID.
    pub(crate) fn new_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Starts a watch and returns its ID.
    pub(crate) fn watch(&mut self, bucket: Bucket, filters: Vec<String>) -> WatchId {
        self.next_watch += 1;
        let id = WatchId(self.next_watch);
        self.actions.push_back(Action::Watch {
            id,
            bucket,
            filters,
        });
        id
    }

    /// Queues an action.
    pub(crate) fn act(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Queues an event.
    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// The next queued action.
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next queued event.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Reports a KV request that failed.
    pub(crate) fn warn_kv(&mut self, key: &str, result: &KvResult) {
        self.emit(Event::Warning(Warning::KvFailed {
            key: key.to_owned(),
            reason: format!("{result:?}"),
        }));
    }

    /// Reports a value that could not be read.
    pub(crate) fn undecodable(&mut self, key: String, reason: impl ToString) {
        self.emit(Event::Warning(Warning::Undecodable {
            key,
            reason: reason.to_string(),
        }));
    }
}
