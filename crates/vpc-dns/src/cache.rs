//! Ready-made UDP answers, remembered per socket thread.
//!
//! An answer made from the World alone ([`LocalAnswer`](crate::server::LocalAnswer))
//! is a function of the request's bytes, the resolver's VPC and the World
//! (admission, which depends on the source address too, is checked for every
//! query before a remembered answer is used). So the encoded answer to one
//! request is the answer to every request with the same bytes after the
//! 2-byte ID, for as long as the World is the same: the cache keys on those
//! bytes exactly as sent (so the question is echoed with its own case, and
//! EDNS, DO, RD, CD and anything else in the request select their own
//! answer), stores the encoded answer and the outcome the query hook is told,
//! and holds only answers of one snapshot generation: the first query that
//! sees another generation (any change to the World: a peering DNS option,
//! a record set, a VPC attribute, an instance) empties it.
//!
//! Answers forwarded to the upstream are never remembered. The cache is
//! bounded by [`BUDGET`] bytes of keys and answers; past it, it starts over.

use std::collections::HashMap;

/// The most bytes of requests and answers one socket's cache holds.
pub(crate) const BUDGET: usize = 256 * 1024;

/// What each entry costs beyond its bytes (map slot, boxes, lengths).
const ENTRY_OVERHEAD: usize = 64;

/// The shortest request that can be remembered: a DNS header.
const HEADER: usize = 12;

/// One remembered answer.
#[derive(Debug)]
pub(crate) struct Remembered {
    /// The encoded answer, with the ID of the request that made it.
    pub(crate) bytes: Box<[u8]>,
    /// What the query hook is told.
    pub(crate) outcome: &'static str,
}

/// The answers of one socket, for one snapshot generation.
#[derive(Debug, Default)]
pub(crate) struct AnswerCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Remembered>,
    bytes: usize,
}

impl AnswerCache {
    /// The answer remembered for `request` in `generation`, if any;
    /// forgets everything remembered for another generation.
    pub(crate) fn get(&mut self, generation: u64, request: &[u8]) -> Option<&Remembered> {
        self.at(generation);
        if request.len() < HEADER {
            return None;
        }
        self.entries.get(&request[2..])
    }

    /// Remembers `answer` (encoded for `request`) in `generation`.
    pub(crate) fn insert(
        &mut self,
        generation: u64,
        request: &[u8],
        answer: &[u8],
        outcome: &'static str,
    ) {
        self.at(generation);
        if request.len() < HEADER || answer.len() < HEADER {
            return;
        }
        let cost = request.len() + answer.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > BUDGET {
            self.clear();
        }
        let previous = self.entries.insert(
            request[2..].into(),
            Remembered {
                bytes: answer.into(),
                outcome,
            },
        );
        if previous.is_none() {
            self.bytes += cost;
        }
    }

    /// Writes the remembered `answer` for `request` into `out`, with the
    /// request's ID.
    pub(crate) fn reply_into(answer: &Remembered, request: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&answer.bytes);
        out[..2].copy_from_slice(&request[..2]);
    }

    /// How many answers are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn at(&mut self, generation: u64) {
        if generation != self.generation {
            self.clear();
            self.generation = generation;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u16, tail: &[u8]) -> Vec<u8> {
        let mut r = id.to_be_bytes().to_vec();
        r.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        r.extend_from_slice(tail);
        r
    }

    #[test]
    fn an_answer_is_found_by_the_bytes_after_the_id_and_gets_the_askers_id() {
        let mut c = AnswerCache::default();
        let first = request(0x1111, b"question");
        let answer = request(0x1111, b"question+answer");
        c.insert(1, &first, &answer, "NOERROR");
        let again = request(0xabcd, b"question");
        let hit = c.get(1, &again).expect("remembered");
        assert_eq!(hit.outcome, "NOERROR");
        let mut out = Vec::new();
        AnswerCache::reply_into(hit, &again, &mut out);
        assert_eq!(out[..2], [0xab, 0xcd]);
        assert_eq!(out[2..], answer[2..]);
        // Any other byte (case, a flag, EDNS) is another question.
        assert!(c.get(1, &request(0xabcd, b"Question")).is_none());
        let mut rd_off = again.clone();
        rd_off[2] = 0;
        assert!(c.get(1, &rd_off).is_none());
        assert!(c.get(1, &request(0xabcd, b"question\0")).is_none());
        // Shorter than a header: never remembered, never found.
        c.insert(1, &[1, 2, 3], &answer, "NOERROR");
        assert!(c.get(1, &[9, 9, 3]).is_none());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn another_generation_forgets_everything() {
        let mut c = AnswerCache::default();
        let q = request(1, b"q");
        c.insert(1, &q, &request(1, b"old"), "NOERROR");
        assert!(c.get(1, &q).is_some());
        assert!(
            c.get(2, &q).is_none(),
            "a new World: the old answer is gone"
        );
        assert!(c.get(1, &q).is_none(), "and does not come back");
        c.insert(3, &q, &request(1, b"new"), "NXDOMAIN");
        assert_eq!(c.get(3, &q).unwrap().outcome, "NXDOMAIN");
        assert_eq!(&c.get(3, &q).unwrap().bytes[2..], &request(1, b"new")[2..]);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let mut c = AnswerCache::default();
        let answer = vec![0u8; 500];
        for i in 0..2_000u32 {
            c.insert(1, &request(0, &i.to_be_bytes()), &answer, "NOERROR");
            assert!(c.bytes <= BUDGET, "{} bytes after {i}", c.bytes);
        }
        assert!(c.len() > 100, "it holds what fits: {}", c.len());
        // The latest answer is always there.
        assert!(c.get(1, &request(0, &1_999u32.to_be_bytes())).is_some());
        // The same request again costs nothing more.
        let before = c.bytes;
        c.insert(1, &request(0, &1_999u32.to_be_bytes()), &answer, "NOERROR");
        assert_eq!(c.bytes, before);
    }
}
