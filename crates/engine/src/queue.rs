//! Growth of the engine's bounded first-in-first-out queues.

use std::collections::VecDeque;

/// Makes room for one more entry in a queue that holds at most `cap`: by half of what it holds
/// rather than double, and never past `cap`. Doubling leaves up to half of the last power of two
/// unused: the tracked-event queue at its default cap of 300,000 would take room for 524,288.
pub(crate) fn reserve_one<T>(queue: &mut VecDeque<T>, cap: usize) {
    let len = queue.len();
    if len < queue.capacity() {
        return;
    }
    let by_half = (len / 2).max(16);
    let room = match cap.saturating_sub(len) {
        // Past the cap (a caller that broke its bound): grown by half still, never one entry at
        // a time, which would copy the whole queue on every push.
        0 => by_half,
        left => by_half.min(left),
    };
    queue.reserve_exact(room);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_filled_to_its_cap_takes_no_room_past_it() {
        let cap = 300_000;
        let mut queue = VecDeque::new();
        for i in 0..cap {
            reserve_one(&mut queue, cap);
            queue.push_back(i);
        }
        assert!(queue.capacity() <= cap, "room for {}", queue.capacity());
        // Past the cap: still room, and by half at once.
        reserve_one(&mut queue, cap);
        queue.push_back(cap);
        assert_eq!(queue.len(), cap + 1);
        assert!(
            queue.capacity() >= cap + cap / 2,
            "room for {}",
            queue.capacity()
        );
    }
}
