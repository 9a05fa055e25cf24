//! Consumers of a session's output (attached clients, an exec's caller), each
//! with a bounded queue.
//!
//! Flow control: while a subscriber holds more than `limit` queued bytes the
//! session's output is not read (the container blocks on its full pipe: no
//! data is dropped and nothing grows without bound). A droppable subscriber
//! that stays over the limit for `timeout` is dropped instead: its queue is
//! discarded, it receives [`Output::Dropped`] with the byte counts it was
//! given, and the container runs on. A subscriber that is not droppable (an
//! exec's only consumer) holds the output back for as long as it takes.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::exit::ExitStatus;
use crate::Stream;

use super::SessionId;

/// Handle of a subscriber.
pub type SubId = u64;

/// What a subscriber receives, in order.
#[derive(Clone, Debug)]
pub enum Output {
    /// Bytes the process wrote to a stream.
    Data(Stream, Rc<Vec<u8>>),
    /// The subscriber was too slow and was cut off after receiving this many
    /// bytes of stdout and stderr; nothing follows.
    Dropped {
        /// Stdout bytes handed out before the cut.
        stdout: u64,
        /// Stderr bytes handed out before the cut.
        stderr: u64,
    },
    /// The process ended and all its output was handed out; nothing follows.
    Exit(ExitStatus),
}

struct Sub {
    session: SessionId,
    queue: VecDeque<Output>,
    queued: usize,
    over_since: Option<Instant>,
    droppable: bool,
    closed: bool,
    given: [u64; 2],
}

/// All subscribers.
pub struct Subscribers {
    subs: BTreeMap<SubId, Sub>,
    next: SubId,
    limit: usize,
    timeout: Duration,
}

impl Subscribers {
    /// No subscribers yet; `limit` bytes queued each, `timeout` to drain.
    pub fn new(limit: usize, timeout: Duration) -> Subscribers {
        Subscribers {
            subs: BTreeMap::new(),
            next: 1,
            limit,
            timeout,
        }
    }

    /// Adds a subscriber of `session`.
    pub fn add(&mut self, session: SessionId, droppable: bool) -> SubId {
        let id = self.next;
        self.next += 1;
        self.subs.insert(
            id,
            Sub {
                session,
                queue: VecDeque::new(),
                queued: 0,
                over_since: None,
                droppable,
                closed: false,
                given: [0, 0],
            },
        );
        id
    }

    /// Removes a subscriber.
    pub fn remove(&mut self, id: SubId) {
        self.subs.remove(&id);
    }

    /// Whether any open subscriber listens to `session`.
    pub fn any_for(&self, session: SessionId) -> bool {
        self.subs
            .values()
            .any(|s| s.session == session && !s.closed)
    }

    /// Queues `data` for every open subscriber of `session`.
    pub fn push_data(&mut self, session: SessionId, stream: Stream, data: &Rc<Vec<u8>>) {
        let now = Instant::now();
        for s in self
            .subs
            .values_mut()
            .filter(|s| s.session == session && !s.closed)
        {
            s.queue.push_back(Output::Data(stream, Rc::clone(data)));
            s.queued += data.len();
            if s.queued > self.limit && s.over_since.is_none() {
                s.over_since = Some(now);
            }
        }
    }

    /// Queues the final `Exit` for every open subscriber of `session`.
    pub fn push_exit(&mut self, session: SessionId, status: &ExitStatus) {
        for s in self
            .subs
            .values_mut()
            .filter(|s| s.session == session && !s.closed)
        {
            s.queue.push_back(Output::Exit(status.clone()));
            s.closed = true;
        }
    }

    /// Whether some subscriber of `session` is over its limit (the session's
    /// output must not be read now).
    pub fn holds_back(&self, session: SessionId) -> bool {
        self.subs
            .values()
            .any(|s| s.session == session && !s.closed && s.queued > self.limit)
    }

    /// Next output for subscriber `id`, if any is queued.
    pub fn pop(&mut self, id: SubId) -> Option<Output> {
        let s = self.subs.get_mut(&id)?;
        let out = s.queue.pop_front()?;
        if let Output::Data(stream, d) = &out {
            s.queued -= d.len();
            s.given[*stream as usize] += d.len() as u64;
            if s.queued <= self.limit {
                s.over_since = None;
            }
        }
        Some(out)
    }

    /// Drops the droppable subscribers that stayed over the limit too long.
    pub fn expire(&mut self, now: Instant) {
        for s in self.subs.values_mut() {
            let late = s
                .over_since
                .is_some_and(|t| now.duration_since(t) >= self.timeout);
            if late && s.droppable && !s.closed {
                s.queue.clear();
                s.queued = 0;
                s.over_since = None;
                s.closed = true;
                s.queue.push_back(Output::Dropped {
                    stdout: s.given[0],
                    stderr: s.given[1],
                });
            }
        }
    }

    /// When the next subscriber would be dropped.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.subs
            .values()
            .filter(|s| s.droppable && !s.closed)
            .filter_map(|s| s.over_since.map(|t| t + self.timeout))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> Rc<Vec<u8>> {
        Rc::new(vec![b'x'; n])
    }

    #[test]
    fn over_limit_holds_back_then_drops_a_stalled_subscriber() {
        let mut s = Subscribers::new(100, Duration::from_millis(10));
        let fast = s.add(0, true);
        let slow = s.add(0, true);
        s.push_data(0, Stream::Stdout, &chunk(80));
        assert!(!s.holds_back(0));
        s.push_data(0, Stream::Stdout, &chunk(80));
        assert!(s.holds_back(0));
        while s.pop(fast).is_some() {}
        assert!(s.holds_back(0), "the slow one still holds the output back");
        let t = s.next_deadline().unwrap();
        s.expire(t);
        assert!(!s.holds_back(0));
        match s.pop(slow) {
            Some(Output::Dropped {
                stdout: 0,
                stderr: 0,
            }) => {}
            o => panic!("{o:?}"),
        }
        assert!(s.pop(slow).is_none());
        s.push_data(0, Stream::Stderr, &chunk(5));
        assert!(matches!(s.pop(fast), Some(Output::Data(Stream::Stderr, _))));
    }

    #[test]
    fn a_subscriber_that_is_not_droppable_is_never_dropped() {
        let mut s = Subscribers::new(10, Duration::from_millis(0));
        let id = s.add(3, false);
        s.push_data(3, Stream::Stdout, &chunk(50));
        s.expire(Instant::now() + Duration::from_secs(5));
        assert!(s.holds_back(3));
        assert!(matches!(s.pop(id), Some(Output::Data(..))));
        assert!(!s.holds_back(3));
    }
}
