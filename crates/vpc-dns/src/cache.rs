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
//! a record set, a VPC attribute, an instance) empties it, and so does the
//! socket's thread when it has waited a second for a datagram.
//!
//! Answers forwarded to the upstream, and answers that could not be encoded
//! (the SERVFAIL put in their place), are never remembered. Memory is bounded
//! twice: one cache holds at most [`SOCKET_BUDGET`] bytes of keys and answers
//! (past it, it starts over), and all the caches of the process together at
//! most [`PROCESS_BUDGET`] (a cache that would go past it empties itself and
//! remembers the answer only if it then fits). Emptying gives the map's
//! memory back too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most bytes of requests and answers one socket's cache holds.
pub(crate) const SOCKET_BUDGET: usize = 256 * 1024;

/// The most bytes all the caches of the process hold together (every host
/// runs every VPC's resolver, three UDP sockets each).
pub(crate) const PROCESS_BUDGET: usize = 64 * 1024 * 1024;

/// What each entry costs beyond its bytes: its map slot (two boxes, a
/// string: 49 bytes) times the spare room a map keeps (up to 2.3 slots an
/// entry just after it grew), and the allocator's rounding of two boxes.
const ENTRY_OVERHEAD: usize = 128;

/// The shortest request that can be remembered: a DNS header.
const HEADER: usize = 12;

/// Bytes held by a set of caches, and the most they may hold together.
#[derive(Debug)]
pub(crate) struct SharedBudget {
    held: AtomicUsize,
    limit: usize,
}

impl SharedBudget {
    pub(crate) const fn new(limit: usize) -> SharedBudget {
        SharedBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `cost` bytes if they fit under the limit.
    fn take(&self, cost: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + cost <= self.limit).then_some(held + cost)
            })
            .is_ok()
    }

    fn give_back(&self, cost: usize) {
        self.held.fetch_sub(cost, Ordering::Relaxed);
    }

    /// How many bytes are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// The budget every socket's cache in this process shares.
static PROCESS: SharedBudget = SharedBudget::new(PROCESS_BUDGET);

/// One remembered answer.
#[derive(Debug)]
pub(crate) struct Remembered {
    /// The encoded answer, with the ID of the request that made it.
    pub(crate) bytes: Box<[u8]>,
    /// What the query hook is told.
    pub(crate) outcome: &'static str,
}

/// The answers of one socket, for one snapshot generation.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Remembered>,
    bytes: usize,
    shared: &'static SharedBudget,
    /// How many asks found their answer here.
    #[cfg(test)]
    hits: usize,
}

impl Default for AnswerCache {
    fn default() -> AnswerCache {
        AnswerCache::sharing(&PROCESS)
    }
}

impl Drop for AnswerCache {
    fn drop(&mut self) {
        self.shared.give_back(self.bytes);
    }
}

impl AnswerCache {
    /// An empty cache counting its bytes in `shared`.
    pub(crate) fn sharing(shared: &'static SharedBudget) -> AnswerCache {
        AnswerCache {
            generation: 0,
            entries: HashMap::new(),
            bytes: 0,
            shared,
            #[cfg(test)]
            hits: 0,
        }
    }

    /// The answer remembered for `request` in `generation`, if any;
    /// forgets everything remembered for another generation.
    pub(crate) fn get(&mut self, generation: u64, request: &[u8]) -> Option<&Remembered> {
        self.at(generation);
        if request.len() < HEADER {
            return None;
        }
        let found = self.entries.get(&request[2..]);
        #[cfg(test)]
        if found.is_some() {
            self.hits += 1;
        }
        found
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
        if request.len() < HEADER
            || answer.len() < HEADER
            || self.entries.contains_key(&request[2..])
        {
            return;
        }
        let cost = request.len() + answer.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > SOCKET_BUDGET {
            self.clear();
        }
        if !self.shared.take(cost) {
            // The process is at its budget: this socket starts over, and
            // remembers the answer only if that made room.
            self.clear();
            if !self.shared.take(cost) {
                return;
            }
        }
        self.entries.insert(
            request[2..].into(),
            Remembered {
                bytes: answer.into(),
                outcome,
            },
        );
        self.bytes += cost;
    }

    /// Forgets everything remembered for another generation than `generation`.
    pub(crate) fn keep_only(&mut self, generation: u64) {
        self.at(generation);
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

    /// How many asks found their answer here.
    #[cfg(test)]
    pub(crate) fn hits(&self) -> usize {
        self.hits
    }

    fn at(&mut self, generation: u64) {
        if generation != self.generation {
            self.clear();
            self.generation = generation;
        }
    }

    /// Forgets everything and gives its memory back (to the allocator and
    /// to the shared budget).
    fn clear(&mut self) {
        if self.entries.capacity() > 0 {
            self.entries = HashMap::new();
        }
        self.shared.give_back(self.bytes);
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
            assert!(c.bytes <= SOCKET_BUDGET, "{} bytes after {i}", c.bytes);
        }
        assert!(c.len() > 100, "it holds what fits: {}", c.len());
        // The latest answer is always there.
        assert!(c.get(1, &request(0, &1_999u32.to_be_bytes())).is_some());
        // The same request again costs nothing more.
        let before = c.bytes;
        c.insert(1, &request(0, &1_999u32.to_be_bytes()), &answer, "NOERROR");
        assert_eq!(c.bytes, before);
    }

    fn budget(limit: usize) -> &'static SharedBudget {
        Box::leak(Box::new(SharedBudget::new(limit)))
    }

    #[test]
    fn all_caches_together_stay_within_the_process_budget() {
        // Room for about nine entries of ~650 bytes, shared by three sockets.
        let shared = budget(6_000);
        let mut sockets: Vec<AnswerCache> = (0..3).map(|_| AnswerCache::sharing(shared)).collect();
        let answer = vec![0u8; 500];
        for i in 0..300u32 {
            let c = &mut sockets[i as usize % 3];
            c.insert(1, &request(0, &i.to_be_bytes()), &answer, "NOERROR");
            let held: usize = sockets.iter().map(|c| c.bytes).sum();
            assert_eq!(
                shared.held(),
                held,
                "after {i}: the shared count is the caches' sum"
            );
            assert!(held <= 6_000, "after {i}: {held} bytes held");
        }
        // Each socket still remembers its latest answer: at the budget it
        // starts over itself rather than giving up.
        for (s, c) in sockets.iter_mut().enumerate() {
            let last = 297 + s as u32;
            assert!(
                c.get(1, &request(0, &last.to_be_bytes())).is_some(),
                "socket {s}"
            );
        }
        // A socket that cannot fit an answer even on its own remembers nothing.
        let mut greedy = AnswerCache::sharing(shared);
        greedy.insert(1, &request(0, b"big"), &vec![0u8; 7_000], "NOERROR");
        assert_eq!(greedy.len(), 0);
        assert_eq!(greedy.bytes, 0);
        // A new generation, or a cache dropped (its socket closed), gives its
        // bytes back to the others.
        sockets[0].keep_only(2);
        assert_eq!(sockets[0].len(), 0);
        assert_eq!(
            sockets[0].entries.capacity(),
            0,
            "the map's memory is given back"
        );
        drop(sockets.pop());
        let held: usize = sockets.iter().map(|c| c.bytes).sum();
        assert_eq!(shared.held(), held);
        drop(sockets);
        drop(greedy);
        assert_eq!(shared.held(), 0);
    }
}
