//! The documents `parti plan --json` and `parti explain --json` print (schema:
//! docs/plan-json.md): the same as the text forms, every partition list whole.

use serde::Serialize;

/// The version of both documents; raised when a field changes meaning or goes away (new
/// fields may be added within a version).
pub const VERSION: u32 = 1;

/// The previewed change.
#[derive(Debug, Serialize)]
pub struct ChangeDoc {
    /// `add`, `remove` or `none`.
    pub kind: &'static str,
    /// The added or removed workers' IDs (empty for `none`).
    pub workers: Vec<u32>,
}

/// Max and min load over the mean of one plan.
#[derive(Debug, Serialize)]
pub struct BalanceDoc {
    /// Heaviest worker's load over the mean (1.0 is perfect).
    pub max_over_mean: f64,
    /// Lightest worker's load over the mean.
    pub min_over_mean: f64,
}

/// Balance before and after the change.
#[derive(Debug, Serialize)]
pub struct BalancePair {
    /// The committed assignment's.
    pub before: BalanceDoc,
    /// The plan's.
    pub after: BalanceDoc,
}

/// One worker of the committed assignment or of the plan.
#[derive(Debug, Serialize)]
pub struct WorkerDoc {
    /// Its ID.
    pub id: u32,
    /// `live` (in both), `new` (added by the change), `removed` (by the change) or `gone`
    /// (in the committed assignment, not live now).
    pub status: &'static str,
    /// Its capacity.
    pub capacity: u32,
    /// Partitions it holds in the committed assignment.
    pub before: usize,
    /// Partitions it holds in the plan.
    pub after: usize,
    /// Partitions it gains, in natural order.
    pub gained: Vec<String>,
    /// Partitions it loses, in natural order.
    pub lost: Vec<String>,
}

/// What `parti plan --json` prints.
#[derive(Debug, Serialize)]
pub struct PlanDoc {
    /// [`VERSION`].
    pub v: u32,
    /// `plan`.
    pub command: &'static str,
    /// Where the committed assignment was read, and its generation.
    pub source: String,
    /// The strategy's name.
    pub strategy: String,
    /// The change previewed.
    pub change: ChangeDoc,
    /// Partitions planned.
    pub partitions: usize,
    /// Their total weight.
    pub total_weight: u64,
    /// Whether weights came from `--weights` (otherwise every partition weighs 100).
    pub weighted: bool,
    /// Every worker before or after, by ID.
    pub workers: Vec<WorkerDoc>,
    /// Partitions whose owner changes.
    pub moved: usize,
    /// Their total weight.
    pub moved_weight: u64,
    /// About the fewest partitions an even split must move for the change.
    pub even_split_moves: usize,
    /// Balance before and after.
    pub balance: BalancePair,
    /// Remarks on the input (partitions left out, pins that do not hold, ...).
    pub notes: Vec<String>,
}

/// What `parti explain --json` prints.
#[derive(Debug, Serialize)]
pub struct ExplainDoc {
    /// [`VERSION`].
    pub v: u32,
    /// `explain`.
    pub command: &'static str,
    /// The partition explained.
    pub partition: String,
    /// Where the committed assignment was read, and its generation.
    pub source: String,
    /// The strategy's name.
    pub strategy: String,
    /// The change previewed (`none` without `--add` / `--remove`).
    pub change: ChangeDoc,
    /// Its committed owner, or null.
    pub now: Option<u32>,
    /// Its owner in the plan, or null when no worker is left.
    pub planned: Option<u32>,
    /// One sentence from the strategy.
    pub reason: String,
    /// Remarks on the input.
    pub notes: Vec<String>,
}

/// A document as pretty-printed JSON.
pub fn to_text(doc: &impl Serialize) -> String {
    serde_json::to_string_pretty(doc).expect("a plan document serializes")
}
