//! [`SubjectTemplate`]: how a partition becomes a NATS subject.

use super::SubscriptionError;
use parti_core::PartitionId;
use std::fmt;
use std::str::FromStr;

/// Maps a partition to the NATS subject its messages are published on.
///
/// A template is literal subject text with placeholders:
/// - `{keys}`: every key of the partition, joined by `.` (its [`PartitionId`]);
/// - `{key0}`, `{key1}`, ...: one key, by position.
///
/// `work.{keys}` maps partition `eu.orders` (keys `eu`, `orders`) to `work.eu.orders`;
/// `{key1}.in.{key0}` maps it to `orders.in.eu`. Placeholders may share a token with text
/// (`tenant-{key0}.jobs`).
///
/// [`SubjectTemplate::parse`] refuses, with a reason naming the problem: an empty template,
/// whitespace, an unknown or unclosed placeholder, a stray `}`, NATS wildcards (`*`, `>`: a
/// partition owns literal subjects), an empty token (`work..{keys}`, a leading or trailing
/// `.`), and a template without placeholders (every partition would share one subject).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectTemplate {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Piece {
    Text(String),
    Keys,
    Key(usize),
}

impl SubjectTemplate {
    /// Parses and validates a template (see the type's docs for the syntax).
    pub fn parse(template: &str) -> Result<Self, SubscriptionError> {
        let bad = |reason: String| SubscriptionError::InvalidTemplate {
            template: template.to_owned(),
            reason,
        };
        if template.is_empty() {
            return Err(bad("template is empty".into()));
        }
        if let Some(c) = template.chars().find(|c| c.is_whitespace()) {
            return Err(bad(format!("holds whitespace ({c:?}); subjects cannot")));
        }
        if let Some(c) = template.chars().find(|c| matches!(c, '*' | '>')) {
            return Err(bad(format!(
                "holds the wildcard `{c}`; a partition's subject must be literal"
            )));
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        let mut offset = 0;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let Some(end) = rest.find('}') else {
                        return Err(bad(format!("unclosed `{{` at byte {offset}")));
                    };
                    let name = &rest[1..end];
                    let piece = placeholder(name).ok_or_else(|| {
                        bad(format!(
                            "unknown placeholder `{{{name}}}`; use `{{keys}}` or `{{key0}}`, \
                             `{{key1}}`, ..."
                        ))
                    })?;
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                    rest = &rest[end + 1..];
                    offset += end + 1;
                }
                '}' => return Err(bad(format!("unmatched `}}` at byte {offset}"))),
                c => {
                    text.push(c);
                    rest = &rest[c.len_utf8()..];
                    offset += c.len_utf8();
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
            return Err(bad(
                "has no placeholder ({keys}, {key0}, ...): every partition would share one \
                 subject"
                    .into(),
            ));
        }
        let parsed = SubjectTemplate {
            source: template.to_owned(),
            pieces,
        };
        // Keys are never empty, so only the literal text can make an empty token.
        let sample = parsed.render(|_| "k");
        if sample.split('.').any(str::is_empty) {
            return Err(bad(
                "has an empty token (a leading or trailing `.`, or `..`)".into(),
            ));
        }
        Ok(parsed)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The subject of `partition`. Fails with [`SubscriptionError::MissingKey`] when the
    /// template names a key the partition does not have (`{key2}` for a two-key partition).
    pub fn subject(&self, partition: &PartitionId) -> Result<String, SubscriptionError> {
        let keys: Vec<&str> = partition.keys().collect();
        if let Some(index) = self.max_key_index().filter(|i| *i >= keys.len()) {
            return Err(SubscriptionError::MissingKey {
                partition: partition.clone(),
                index,
                keys: keys.len(),
            });
        }
        Ok(self.render(|piece| match piece {
            Some(i) => keys[i],
            None => partition.as_str(),
        }))
    }

    /// The subject of the partition made of `keys`, validating them first (an empty list is
    /// [`SubscriptionError::EmptyKeys`], a bad key [`SubscriptionError::InvalidPartition`]).
    pub fn subject_for_keys<K: AsRef<str>>(&self, keys: &[K]) -> Result<String, SubscriptionError> {
        self.subject(&super::partition_of_keys(keys)?)
    }

    /// The highest `{keyN}` index used, if any.
    fn max_key_index(&self) -> Option<usize> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Key(i) => Some(*i),
                _ => None,
            })
            .max()
    }

    /// Renders with `value(Some(i))` for `{keyI}` and `value(None)` for `{keys}`.
    fn render<'a>(&self, value: impl Fn(Option<usize>) -> &'a str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Keys => out.push_str(value(None)),
                Piece::Key(i) => out.push_str(value(Some(*i))),
            }
        }
        out
    }
}

/// `keys` → `Keys`, `keyN` → `Key(N)` (N in canonical decimal form).
fn placeholder(name: &str) -> Option<Piece> {
    if name == "keys" {
        return Some(Piece::Keys);
    }
    let digits = name.strip_prefix("key")?;
    let index: usize = digits.parse().ok()?;
    (index.to_string() == digits).then_some(Piece::Key(index))
}

impl FromStr for SubjectTemplate {
    type Err = SubscriptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectTemplate::parse(s)
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectTemplate({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PartitionId {
        PartitionId::parse(s).unwrap()
    }

    fn reason(template: &str) -> String {
        match SubjectTemplate::parse(template) {
            Err(SubscriptionError::InvalidTemplate { reason, .. }) => reason,
            other => panic!("{template:?}: expected InvalidTemplate, got {other:?}"),
        }
    }

    #[test]
    fn keys_placeholder_joins_every_key() {
        let t = SubjectTemplate::parse("work.{keys}").unwrap();
        assert_eq!(t.subject(&id("a")).unwrap(), "work.a");
        assert_eq!(t.subject(&id("eu.orders")).unwrap(), "work.eu.orders");
    }

    #[test]
    fn indexed_placeholders_pick_keys_and_share_tokens_with_text() {
        let t = SubjectTemplate::parse("{key1}.in.tenant-{key0}").unwrap();
        assert_eq!(t.subject(&id("eu.orders")).unwrap(), "orders.in.tenant-eu");
    }

    #[test]
    fn a_missing_key_is_named() {
        let t = SubjectTemplate::parse("work.{key2}").unwrap();
        assert_eq!(
            t.subject(&id("a.b")),
            Err(SubscriptionError::MissingKey {
                partition: id("a.b"),
                index: 2,
                keys: 2
            })
        );
    }

    #[test]
    fn key_lists_are_validated() {
        let t = SubjectTemplate::parse("work.{keys}").unwrap();
        assert_eq!(
            t.subject_for_keys::<&str>(&[]),
            Err(SubscriptionError::EmptyKeys)
        );
        assert!(matches!(
            t.subject_for_keys(&["a", ""]),
            Err(SubscriptionError::InvalidPartition(_))
        ));
        assert_eq!(t.subject_for_keys(&["a", "b"]).unwrap(), "work.a.b");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(reason("").contains("empty"));
        assert!(reason("work. {keys}").contains("whitespace"));
        assert!(reason("work.*.{keys}").contains("wildcard `*`"));
        assert!(reason("work.{keys}.>").contains("wildcard `>`"));
        assert!(reason("work.{nope}").contains("unknown placeholder `{nope}`"));
        assert!(reason("work.{key01}").contains("unknown placeholder"));
        assert!(reason("work.{keys").contains("unclosed `{` at byte 5"));
        assert!(reason("work}.{keys}").contains("unmatched `}` at byte 4"));
        assert!(reason("work.all").contains("no placeholder"));
        assert!(reason("work..{keys}").contains("empty token"));
        assert!(reason(".{keys}").contains("empty token"));
        assert!(reason("{keys}.").contains("empty token"));
    }

    #[test]
    fn parses_from_str_and_displays_as_written() {
        let t: SubjectTemplate = "a.{key0}".parse().unwrap();
        assert_eq!(t.to_string(), "a.{key0}");
        assert_eq!(t.as_str(), "a.{key0}");
    }
}
