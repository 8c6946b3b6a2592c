//! A fast decoder for the canonical encoding: exactly the bytes [`super::encode`] writes
//! (serde_json, compact, fields in declaration order, map keys increasing).
//!
//! It accepts nothing else. Any other spelling of a value — whitespace, another field order,
//! unknown fields, escapes, leading zeros, reported `loads`, trailing bytes — gives `None`,
//! and [`super::decode`] takes the serde path, which decides and words every error. For what it
//! accepts it returns what serde_json returns. Every value parti writes is canonical, so the
//! serde path only sees foreign or hand-written bytes.

use super::{CtlValue, GenRecord, LeaderValue, LeaseValue, Member, Phase, ShareChunk};
use crate::{Epoch, Generation, PartitionId, WorkerId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A position in the bytes being read.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cursor { b, i: 0 }
    }

    /// Consumes `s` if the bytes continue with it.
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let rest = self.b.get(self.i..)?;
        rest.starts_with(s).then(|| self.i += s.len())
    }

    /// Consumes `s` if the bytes continue with it; reports whether they did.
    fn eat(&mut self, s: &[u8]) -> bool {
        self.lit(s).is_some()
    }

    /// A non-negative integer without leading zeros that fits a u64.
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&d) = self.b.get(self.i).filter(|d| d.is_ascii_digit()) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        (digits == 1 || (digits > 1 && self.b[start] != b'0')).then_some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    fn u8(&mut self) -> Option<u8> {
        u8::try_from(self.u64()?).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        if self.eat(b"true") {
            Some(true)
        } else {
            self.lit(b"false").map(|()| false)
        }
    }

    /// `null` or an integer.
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.eat(b"null") {
            Some(None)
        } else {
            self.u64().map(Some)
        }
    }

    /// A string of printable ASCII with nothing escaped (its JSON text is its value).
    fn str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        let len = self.b[start..].iter().position(|&c| c == b'"')?;
        let s = &self.b[start..start + len];
        if !s.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'\\') {
            return None;
        }
        self.i = start + len + 1;
        std::str::from_utf8(s).ok()
    }

    /// Succeeds at the end of the bytes.
    fn end(&self) -> Option<()> {
        (self.i == self.b.len()).then_some(())
    }
}

pub(super) fn lease(b: &[u8]) -> Option<LeaseValue> {
    let mut c = Cursor::new(b);
    c.lit(b"{\"v\":")?;
    let v = c.u32()?;
    c.lit(b",\"token\":")?;
    let token = c.u64()?;
    c.lit(b",\"capacity\":")?;
    let capacity = c.u32()?;
    c.lit(b",\"applied\":")?;
    let applied = c.opt_u64()?.map(Generation);
    c.lit(b",\"departing\":")?;
    let departing = c.bool()?;
    c.lit(b",\"draining\":")?;
    let draining = c.bool()?;
    c.lit(b"}")?;
    c.end()?;
    Some(LeaseValue {
        v,
        token,
        capacity,
        applied,
        departing,
        draining,
        loads: None,
    })
}

pub(super) fn leader(b: &[u8]) -> Option<LeaderValue> {
    let mut c = Cursor::new(b);
    c.lit(b"{\"v\":")?;
    let v = c.u32()?;
    c.lit(b",\"worker\":")?;
    let worker = WorkerId(c.u32()?);
    c.lit(b",\"token\":")?;
    let token = c.u64()?;
    c.lit(b"}")?;
    c.end()?;
    Some(LeaderValue { v, worker, token })
}

pub(super) fn ctl(b: &[u8]) -> Option<CtlValue> {
    let mut c = Cursor::new(b);
    c.lit(b"{\"v\":")?;
    let v = c.u32()?;
    c.lit(b",\"nonce\":")?;
    let nonce = c.u64()?;
    c.lit(b"}")?;
    c.end()?;
    Some(CtlValue { v, nonce })
}

pub(super) fn gen(b: &[u8]) -> Option<GenRecord> {
    let mut c = Cursor::new(b);
    c.lit(b"{\"v\":")?;
    let v = c.u32()?;
    c.lit(b",\"epoch\":")?;
    let epoch = Epoch(c.u64()?);
    c.lit(b",\"generation\":")?;
    let generation = Generation(c.u64()?);
    c.lit(b",\"phase\":")?;
    let phase_of = |s: &str| match s {
        "stable" => Some(Phase::Stable),
        "scaling" => Some(Phase::Scaling),
        "rebalancing" => Some(Phase::Rebalancing),
        "emergency" => Some(Phase::Emergency),
        _ => None,
    };
    let phase = phase_of(c.str()?)?;
    let trigger = match c.eat(b",\"trigger\":") {
        true => Some(phase_of(c.str()?)?),
        false => None,
    };
    c.lit(b",\"members\":{")?;
    let mut members = BTreeMap::new();
    let mut last: Option<u32> = None;
    if !c.eat(b"}") {
        loop {
            c.lit(b"\"")?;
            let id = c.u32()?;
            if last.is_some_and(|l| l >= id) {
                return None; // not increasing: duplicates are serde's to resolve
            }
            last = Some(id);
            c.lit(b"\":{\"token\":")?;
            let token = c.u64()?;
            c.lit(b",\"digest\":")?;
            let digest = c.u64()?;
            c.lit(b",\"chunks\":")?;
            let chunks = c.u32()?;
            c.lit(b",\"count\":")?;
            let count = c.u32()?;
            c.lit(b",\"slot\":")?;
            let slot = c.u8()?;
            c.lit(b"}")?;
            let member = Member {
                token,
                digest,
                chunks,
                count,
                slot,
            };
            members.insert(WorkerId(id), member);
            if c.eat(b"}") {
                break;
            }
            c.lit(b",")?;
        }
    }
    let resting = match c.eat(b",\"resting\":{") {
        true => {
            let mut resting: BTreeMap<PartitionId, u64> = BTreeMap::new();
            if !c.eat(b"}") {
                loop {
                    let p = PartitionId(Arc::from(c.str()?));
                    if resting.last_key_value().is_some_and(|(l, _)| *l >= p) {
                        return None; // not increasing: duplicates are serde's to resolve
                    }
                    c.lit(b":")?;
                    resting.insert(p, c.u64()?);
                    if c.eat(b"}") {
                        break;
                    }
                    c.lit(b",")?;
                }
            }
            Some(resting)
        }
        false => None,
    };
    c.lit(b"}")?;
    c.end()?;
    Some(GenRecord {
        v,
        epoch,
        generation,
        phase,
        trigger,
        members,
        resting,
    })
}

pub(super) fn share(b: &[u8]) -> Option<ShareChunk> {
    // Two quotes per ID, besides the five field names': room for all of them at once.
    let quotes = b.iter().filter(|&&x| x == b'"').count();
    let mut partitions = Vec::with_capacity(quotes.saturating_sub(10) / 2);
    let head = share_with(b, |id| partitions.push(PartitionId(Arc::from(id))))?;
    Some(ShareChunk {
        v: head.v,
        digest: head.digest,
        index: head.index,
        count: head.count,
        partitions,
    })
}

/// A share chunk without its partitions (see [`share_head`]).
pub(super) struct ShareHead {
    pub(super) v: u32,
    pub(super) digest: u64,
    pub(super) index: u32,
    pub(super) count: u32,
    /// Every partition ID passes [`crate::partition::is_valid_id`].
    pub(super) ids_valid: bool,
}

/// Reads a canonical share chunk like [`share`], without building its partition list.
pub(super) fn share_head(b: &[u8]) -> Option<ShareHead> {
    let mut ids_valid = true;
    let mut head = share_with(b, |id| ids_valid &= crate::partition::is_valid_id(id))?;
    head.ids_valid = ids_valid;
    Some(head)
}

/// Reads a canonical share chunk, handing each partition ID to `each`.
fn share_with(b: &[u8], mut each: impl FnMut(&str)) -> Option<ShareHead> {
    let mut c = Cursor::new(b);
    c.lit(b"{\"v\":")?;
    let v = c.u32()?;
    c.lit(b",\"digest\":")?;
    let digest = c.u64()?;
    c.lit(b",\"index\":")?;
    let index = c.u32()?;
    c.lit(b",\"count\":")?;
    let count = c.u32()?;
    c.lit(b",\"partitions\":[")?;
    if !c.eat(b"]") {
        loop {
            each(c.str()?);
            if c.eat(b"]") {
                break;
            }
            c.lit(b",")?;
        }
    }
    c.lit(b"}")?;
    c.end()?;
    Some(ShareHead {
        v,
        digest,
        index,
        count,
        ids_valid: true,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Member};
    use super::*;
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    fn lease_value(token: u64, applied: Option<u64>, flags: u8) -> LeaseValue {
        LeaseValue {
            v: 1,
            token,
            capacity: (token % 7) as u32 + 1,
            applied: applied.map(Generation),
            departing: flags & 1 != 0,
            draining: flags & 2 != 0,
            loads: None,
        }
    }

    fn gen_value(n: u32, big: u64) -> GenRecord {
        let members = (0..n)
            .map(|i| {
                let member = Member {
                    token: big ^ u64::from(i),
                    digest: big.rotate_left(i),
                    chunks: i + 1,
                    count: i * 100,
                    slot: (i % 2) as u8,
                };
                (WorkerId(i * 37), member)
            })
            .collect();
        GenRecord {
            v: 1,
            epoch: Epoch(big / 3),
            generation: Generation(big / 5),
            phase: Phase::Rebalancing,
            trigger: (big % 2 == 0).then_some(Phase::Emergency),
            members,
            resting: (big % 3 != 0).then(|| {
                (0..n % 4)
                    .map(|i| (PartitionId::parse(&format!("t-{i}.x")).unwrap(), big >> i))
                    .collect()
            }),
        }
    }

    fn share_value(n: usize) -> ShareChunk {
        ShareChunk {
            v: 1,
            digest: u64::MAX - n as u64,
            index: 0,
            count: 1,
            partitions: (0..n)
                .map(|i| PartitionId::parse(&format!("t-{i}.x/{i}")).unwrap())
                .collect(),
        }
    }

    /// Whatever the fast path accepts, serde_json reads as the same value.
    fn agrees<T: DeserializeOwned + PartialEq + Debug>(fast: fn(&[u8]) -> Option<T>, b: &[u8]) {
        if let Some(v) = fast(b) {
            let serde: T = serde_json::from_slice(b).expect("serde reads what the fast path reads");
            assert_eq!(v, serde, "{}", String::from_utf8_lossy(b));
        }
    }

    fn check_all(b: &[u8]) {
        agrees(lease, b);
        agrees(leader, b);
        agrees(ctl, b);
        agrees(gen, b);
        agrees(share, b);
        let head = |h: ShareHead| (h.v, h.digest, h.index, h.count);
        let chunk = |c: ShareChunk| (c.v, c.digest, c.index, c.count);
        assert_eq!(share_head(b).map(head), share(b).map(chunk));
    }

    #[test]
    fn canonical_values_read_back() {
        for (token, applied, flags) in [(1, None, 0), (u64::MAX, Some(0), 3), (10, Some(99), 1)] {
            let v = lease_value(token, applied, flags);
            assert_eq!(lease(&encode(&v)), Some(v));
        }
        let v = LeaderValue {
            v: 1,
            worker: WorkerId(u32::MAX),
            token: 0,
        };
        assert_eq!(leader(&encode(&v)), Some(v));
        let v = CtlValue { v: 7, nonce: 12 };
        assert_eq!(ctl(&encode(&v)), Some(v));
        for (n, big) in [(0, 0), (1, 5), (5, u64::MAX)] {
            let v = gen_value(n, big);
            assert_eq!(gen(&encode(&v)), Some(v));
        }
        for n in [0, 1, 50] {
            let v = share_value(n);
            assert_eq!(share(&encode(&v)), Some(v));
        }
    }

    #[test]
    fn other_spellings_are_left_to_serde() {
        let refused: [&[u8]; 10] = [
            br#"{"v":1, "nonce":2}"#,
            br#"{"v":01,"nonce":2}"#,
            br#"{"nonce":2,"v":1}"#,
            br#"{"v":1,"nonce":2,"x":0}"#,
            br#"{"v":1,"nonce":2} "#,
            br#"{"v":1,"nonce":18446744073709551616}"#,
            br#"{"v":1,"digest":1,"index":0,"count":1,"partitions":["a\u0041"]}"#,
            br#"{"v":1,"token":1,"capacity":1,"applied":null,"departing":false,"draining":false,"loads":{"share":1,"values":[0.5]}}"#,
            br#"{"v":1,"epoch":1,"generation":1,"phase":"stable","members":{"2":{"token":1,"digest":1,"chunks":1,"count":1,"slot":0},"1":{"token":1,"digest":1,"chunks":1,"count":1,"slot":0}}}"#,
            br#"{"v":1,"epoch":1,"generation":1,"phase":"stable","members":{},"resting":{"b":1,"a":2}}"#,
        ];
        for b in refused {
            assert!(
                ctl(b).is_none() && share(b).is_none(),
                "{}",
                String::from_utf8_lossy(b)
            );
            assert!(lease(b).is_none() && gen(b).is_none());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn edited_encodings_agree_with_serde(
            which in 0usize..4,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            edit in 0u8..3,
        ) {
            let mut b = match which {
                0 => encode(&lease_value(123_456, Some(7), 2)),
                1 => encode(&gen_value(3, 1 << 40)),
                2 => encode(&share_value(4)),
                _ => encode(&LeaderValue { v: 1, worker: WorkerId(3), token: 9 }),
            };
            let i = at.index(b.len());
            match edit {
                0 => b[i] = byte,
                1 => b.insert(i, byte),
                _ => b.truncate(i),
            }
            check_all(&b);
        }
    }
}
