//! A linearizability checker for histories of a key-value store (Wing & Gong's search
//! with Lowe's memoization, as Porcupine does it), for the replication tests: clients
//! record every operation's call and return times while leaders are killed and
//! partitions come and go, and the history must be explainable by one sequential order
//! that respects real time.
//!
//! Keys are independent registers, so the history is checked key by key
//! (linearizability is compositional). A write whose outcome the client never learned
//! (the connection died, "outcome unknown") may have taken effect at any moment after
//! its call, or never; a read that never returned says nothing and is dropped.

use std::collections::{BTreeMap, HashSet};

/// What a client did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(u64),
    Delete,
    /// A read, and what it returned.
    Get(Option<u64>),
}

/// One operation in a history: its key, what it did, and when it was called and
/// returned (any clock that orders events; `None`: it never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub key: u64,
    pub op: Op,
    pub call: u64,
    pub ret: Option<u64>,
}

/// The key whose operations admit no linearization, with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: u64,
    pub ops: Vec<Event>,
}

/// Checks `history`; `Err` names the first key (in key order) that is not linearizable.
pub fn check(history: &[Event]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
    for e in history {
        if matches!(e.op, Op::Get(_)) && e.ret.is_none() {
            continue;
        }
        assert!(
            e.ret.is_none_or(|r| r >= e.call),
            "an operation returns after its call: {e:?}"
        );
        by_key.entry(e.key).or_default().push(e.clone());
    }
    for (key, ops) in by_key {
        if !register_linearizable(&ops) {
            return Err(Violation { key, ops });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Call(usize),
    Return(usize),
}

/// Applies `op` to a register holding `state`: whether it is legal there, and the new
/// state.
fn step(state: Option<u64>, op: &Op) -> Option<Option<u64>> {
    match op {
        Op::Put(v) => Some(Some(*v)),
        Op::Delete => Some(None),
        Op::Get(seen) => (*seen == state).then_some(state),
    }
}

/// Wing & Gong's search over one register's operations.
fn register_linearizable(ops: &[Event]) -> bool {
    // Calls and returns in time order; at equal times calls first (the operations then
    // overlap: the permissive reading of a tie). Unknown outcomes return after all.
    let mut marks: Vec<(u64, u8, Mark)> = Vec::with_capacity(2 * ops.len());
    for (i, e) in ops.iter().enumerate() {
        marks.push((e.call, 0, Mark::Call(i)));
        marks.push((e.ret.unwrap_or(u64::MAX), 1, Mark::Return(i)));
    }
    marks.sort_by_key(|&(t, order, m)| {
        let i = match m {
            Mark::Call(i) | Mark::Return(i) => i,
        };
        (t, order, i)
    });
    let marks: Vec<Mark> = marks.into_iter().map(|(_, _, m)| m).collect();
    let mut call_at = vec![0; ops.len()];
    for (pos, m) in marks.iter().enumerate() {
        if let Mark::Call(i) = m {
            call_at[*i] = pos;
        }
    }

    let words = ops.len().div_ceil(64);
    let mut done = vec![0u64; words];
    let mut lifted = vec![false; marks.len()];
    let mut state: Option<u64> = None;
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut pos = 0;
    loop {
        while pos < marks.len() && lifted[pos] {
            pos += 1;
        }
        let Some(&mark) = marks.get(pos) else {
            return true;
        };
        match mark {
            Mark::Call(i) => {
                let next = step(state, &ops[i].op);
                let mut tried = false;
                if let Some(next) = next {
                    done[i / 64] |= 1 << (i % 64);
                    if seen.insert((done.clone(), next)) {
                        stack.push((i, state));
                        state = next;
                        lifted[pos] = true;
                        lifted[return_pos(&marks, i)] = true;
                        pos = 0;
                        tried = true;
                    } else {
                        done[i / 64] &= !(1 << (i % 64));
                    }
                }
                if !tried {
                    pos += 1;
                }
            }
            Mark::Return(i) => {
                if ops[i].ret.is_none() {
                    // Only unknown outcomes are left: every operation that returned is
                    // linearized, and these may never have happened.
                    return true;
                }
                // Operation i returned before being placed: undo the last choice.
                let Some((j, prev)) = stack.pop() else {
                    return false;
                };
                done[j / 64] &= !(1 << (j % 64));
                state = prev;
                lifted[call_at[j]] = false;
                lifted[return_pos(&marks, j)] = false;
                pos = call_at[j] + 1;
            }
        }
    }
}

fn return_pos(marks: &[Mark], i: usize) -> usize {
    marks
        .iter()
        .rposition(|m| matches!(m, Mark::Return(j) if *j == i))
        .expect("every operation has a return mark")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: u64, op: Op, call: u64, ret: Option<u64>) -> Event {
        Event { key, op, call, ret }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            ev(1, Op::Get(None), 0, Some(1)),
            ev(1, Op::Put(5), 2, Some(3)),
            ev(1, Op::Get(Some(5)), 4, Some(5)),
            ev(1, Op::Delete, 6, Some(7)),
            ev(1, Op::Get(None), 8, Some(9)),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not() {
        let h = [
            ev(1, Op::Put(1), 0, Some(1)),
            ev(1, Op::Put(2), 2, Some(3)),
            ev(1, Op::Get(Some(1)), 4, Some(5)),
        ];
        assert_eq!(check(&h).unwrap_err().key, 1);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some(1), Some(2)] {
            let h = [
                ev(7, Op::Put(1), 0, Some(1)),
                ev(7, Op::Put(2), 2, Some(6)),
                ev(7, Op::Get(seen), 3, Some(5)),
            ];
            assert_eq!(check(&h), Ok(()), "{seen:?}");
        }
        // But two reads in sequence cannot go back in time.
        let h = [
            ev(7, Op::Put(1), 0, Some(1)),
            ev(7, Op::Put(2), 2, Some(10)),
            ev(7, Op::Get(Some(2)), 3, Some(4)),
            ev(7, Op::Get(Some(1)), 5, Some(6)),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_value_nobody_wrote_is_a_violation() {
        let h = [
            ev(1, Op::Put(1), 0, Some(1)),
            ev(1, Op::Get(Some(9)), 2, Some(3)),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn an_unknown_outcome_may_have_happened_or_not_but_only_once_seen_stays() {
        // Never seen: fine. Seen: fine. Seen and then unseen again: not linearizable.
        let unknown = ev(3, Op::Put(2), 2, None);
        let base = [ev(3, Op::Put(1), 0, Some(1)), unknown];
        let mut never = base.to_vec();
        never.push(ev(3, Op::Get(Some(1)), 10, Some(11)));
        assert_eq!(check(&never), Ok(()));
        let mut seen = base.to_vec();
        seen.push(ev(3, Op::Get(Some(2)), 10, Some(11)));
        assert_eq!(check(&seen), Ok(()));
        let mut flip = seen.clone();
        flip.push(ev(3, Op::Get(Some(1)), 12, Some(13)));
        assert!(check(&flip).is_err());
        // An unknown outcome cannot take effect before it was called.
        let early = [
            ev(4, Op::Get(Some(2)), 0, Some(1)),
            ev(4, Op::Put(2), 5, None),
        ];
        assert!(check(&early).is_err());
    }

    #[test]
    fn keys_are_checked_apart_and_the_bad_one_is_named() {
        let h = [
            ev(1, Op::Put(1), 0, Some(1)),
            ev(2, Op::Put(1), 0, Some(1)),
            ev(2, Op::Get(None), 2, Some(3)),
            ev(1, Op::Get(Some(1)), 2, Some(3)),
        ];
        assert_eq!(check(&h).unwrap_err().key, 2);
    }

    /// Histories produced by a real register whose operations take effect at a random
    /// instant inside their interval are linearizable; changing one read's answer to a
    /// value never written makes them not. Bounded in size and time.
    #[test]
    fn generated_histories_agree_with_how_they_were_made() {
        let mut rng = tern_storage::sim::SplitMix(0x5EED);
        let mut next = move |n: u64| rng.below(n);
        for round in 0..200 {
            // Effect points 10 apart; each operation's interval spans its point, so up
            // to ~5 operations overlap.
            let mut state: BTreeMap<u64, u64> = BTreeMap::new();
            let mut h = Vec::new();
            for k in 0..60u64 {
                let point = 10 * k + 5;
                let key = next(3);
                let call = point - next(20).min(point);
                let ret = point + next(20);
                let op = match next(3) {
                    0 => {
                        let v = round * 1000 + k;
                        state.insert(key, v);
                        Op::Put(v)
                    }
                    1 => Op::Get(state.get(&key).copied()),
                    _ => {
                        state.remove(&key);
                        Op::Delete
                    }
                };
                let ret = if matches!(op, Op::Put(_)) && next(10) == 0 {
                    None
                } else {
                    Some(ret)
                };
                h.push(ev(key, op, call, ret));
            }
            assert_eq!(check(&h), Ok(()), "round {round}");
            if let Some(e) = h
                .iter_mut()
                .find(|e| matches!(e.op, Op::Get(_)) && e.ret.is_some())
            {
                e.op = Op::Get(Some(u64::MAX));
                assert!(check(&h).is_err(), "round {round}");
            }
        }
    }
}
