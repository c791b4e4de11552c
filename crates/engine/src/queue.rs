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
    let room = (len / 2).max(16).min(cap.saturating_sub(len)).max(1);
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
        // Past the cap (a caller that pops after pushing): still room for one more.
        reserve_one(&mut queue, cap);
        queue.push_back(cap);
        assert_eq!(queue.len(), cap + 1);
    }
}
