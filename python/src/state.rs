//! Worker states as Python sees them (lowercase snake_case strings), and Python-style string
//! reprs.

use parti::State;

/// The Python name of a worker state (`"claiming_id"`, `"stable"`, ...).
pub(crate) fn state_name(state: State) -> &'static str {
    match state {
        State::Init => "init",
        State::ClaimingId => "claiming_id",
        State::Election => "election",
        State::WaitingAssignment => "waiting_assignment",
        State::Stable => "stable",
        State::Scaling => "scaling",
        State::Rebalancing => "rebalancing",
        State::Emergency => "emergency",
        State::Degraded => "degraded",
        State::Shutdown => "shutdown",
    }
}

/// A string as Python's `repr` shows it (single quotes unless it holds one), for `__repr__`s.
pub(crate) fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{}\"", s.escape_debug())
    } else {
        format!("'{}'", s.escape_debug().to_string().replace('\'', "\\'"))
    }
}
