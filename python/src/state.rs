//! Worker states as Python sees them (lowercase snake_case strings), and Python-style string
//! reprs.

use parti::State;

/// The Python name of a worker state (`"claiming_id"`, `"stable"`, ...): core's one spelling.
pub(crate) fn state_name(state: State) -> &'static str {
    state.name()
}

/// A string as Python's `repr` shows it (single quotes unless it holds one and no double
/// quote; backslashes, the quote and control characters escaped), for `__repr__`s.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
