//! A worker's share kept as the encoded chunks: what the leader mirrors of every share.

use super::{canonical, complete_digest, decode, ShareAssembler, ShareChunk, VERSION};
use crate::PartitionId;
use std::collections::{BTreeMap, BTreeSet};

/// Like [`ShareAssembler`], but each chunk stays in its encoded form and is decoded only when
/// the whole share is needed ([`LazyShare::assemble`], rare): the leader mirrors every share
/// and mostly only compares digests. It accepts exactly the chunks
/// `decode::<ShareChunk>` accepts.
#[derive(Clone, Debug, Default)]
pub(crate) struct LazyShare {
    chunks: BTreeMap<u32, Lazy>,
}

#[derive(Clone, Debug)]
struct Lazy {
    digest: u64,
    count: u32,
    bytes: Vec<u8>,
}

impl LazyShare {
    /// Records chunk `index` from its bytes, replacing any older one, if they decode as a share
    /// chunk with that index; otherwise forgets chunk `index`.
    pub(crate) fn put(&mut self, index: u32, bytes: Vec<u8>) {
        // What `decode` would say, without building the partition list when the bytes are
        // canonical (the same checks: version, then chunk index and count, then every ID).
        let head = match canonical::share_head(&bytes) {
            Some(h) => (h.v == VERSION && h.count > 0 && h.index < h.count && h.ids_valid)
                .then_some((h.index, h.digest, h.count)),
            None => decode::<ShareChunk>("share", &bytes)
                .ok()
                .map(|c| (c.index, c.digest, c.count)),
        };
        match head {
            Some((i, digest, count)) if i == index => {
                self.chunks.insert(
                    index,
                    Lazy {
                        digest,
                        count,
                        bytes,
                    },
                );
            }
            _ => self.remove(index),
        }
    }

    /// Forgets chunk `index` (its key was deleted).
    pub(crate) fn remove(&mut self, index: u32) {
        self.chunks.remove(&index);
    }

    /// As [`ShareAssembler::complete_digest`].
    pub(crate) fn complete_digest(&self) -> Option<u64> {
        complete_digest(|i| self.chunks.get(&i).map(|c| (c.digest, c.count)))
    }

    /// As [`ShareAssembler::assemble`] over the decoded chunks (`put` kept only chunks that
    /// decode; were one not to, the share would count as incomplete rather than panic).
    pub(crate) fn assemble(&self) -> Option<BTreeSet<PartitionId>> {
        let mut asm = ShareAssembler::default();
        for c in self.chunks.values() {
            asm.insert(decode("share", &c.bytes).ok()?);
        }
        asm.assemble()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, encode_share};
    use super::*;

    fn parts(n: usize) -> BTreeSet<PartitionId> {
        (0..n)
            .map(|i| PartitionId::parse(&format!("t.{i}")).unwrap())
            .collect()
    }

    /// Feeds the same chunks to a LazyShare and a ShareAssembler (the way the leader used to).
    fn both(chunks: &[(u32, Vec<u8>)]) -> (LazyShare, ShareAssembler) {
        let (mut lazy, mut asm) = (LazyShare::default(), ShareAssembler::default());
        for (index, bytes) in chunks {
            lazy.put(*index, bytes.clone());
            match decode::<ShareChunk>("share", bytes) {
                Ok(c) if c.index == *index => asm.insert(c),
                _ => asm.remove(*index),
            }
        }
        (lazy, asm)
    }

    #[test]
    fn behaves_like_the_assembler() {
        let share = parts(300);
        let encoded = encode_share(&share, 512);
        assert!(encoded.len() > 3);
        let mut chunks: Vec<(u32, Vec<u8>)> = encoded
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, b.clone()))
            .collect();
        let bad_id = br#"{"v":1,"digest":1,"index":1,"count":2,"partitions":["a..b"]}"#;
        let escaped = br#"{"v":1,"digest":1,"index":1,"count":2,"partitions":["\u0041"]}"#;
        let cases: Vec<Vec<(u32, Vec<u8>)>> = vec![
            chunks.clone(),
            chunks[1..].to_vec(),
            vec![(1, bad_id.to_vec())],
            vec![(1, escaped.to_vec())],
            vec![(0, b"{}".to_vec())],
            vec![(2, encoded[0].clone())], // a chunk under another index's key
            {
                let other = encode_share(&parts(2), 512).remove(0);
                chunks.push((0, other)); // a newer head of another share
                chunks.clone()
            },
            vec![(
                0,
                encode(&ShareChunk {
                    v: 2,
                    digest: 0,
                    index: 0,
                    count: 1,
                    partitions: vec![],
                }),
            )],
        ];
        for (i, case) in cases.iter().enumerate() {
            let (lazy, asm) = both(case);
            assert_eq!(lazy.complete_digest(), asm.complete_digest(), "case {i}");
            assert_eq!(lazy.assemble(), asm.assemble(), "case {i}");
        }
        let (lazy, _) = both(&[(1, escaped.to_vec())]);
        assert_eq!(lazy.chunks.len(), 1, "escaped but valid: kept, via serde");
    }
}
