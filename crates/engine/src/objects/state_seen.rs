//! What an object's status has said: the generation it describes and the first outcome seen
//! for each recent generation.

use std::sync::Arc;
use std::time::Duration;

use super::generations::GENERATION_HISTORY;
use crate::model::{ObjectState, Outcome, OutcomeKind};
use crate::time::Timestamp;

/// What an object's status has said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StateSeen {
    pub observed_generation: i64,
    /// The first outcome seen for each recent generation, and when: a rollout that was done
    /// stays done when the next generation's status replaces it (capped at
    /// [`GENERATION_HISTORY`]).
    outcomes: Vec<SeenOutcome>,
}

/// An outcome as kept per object: compact, as every watched pod has one (its Ready).
#[derive(Debug, Clone, PartialEq)]
struct SeenOutcome {
    generation: i64,
    kind: OutcomeKind,
    /// Interned: condition reasons are a few constants.
    reason: Arc<str>,
    message: Box<str>,
    at: Timestamp,
}

impl StateSeen {
    /// The first outcome seen for a generation, and when.
    pub fn outcome_of(&self, generation: i64) -> Option<(Outcome, Timestamp)> {
        self.outcomes
            .iter()
            .find(|o| o.generation == generation)
            .map(|o| {
                let outcome = Outcome {
                    kind: o.kind,
                    reason: o.reason.to_string(),
                    message: o.message.to_string(),
                };
                (outcome, o.at)
            })
    }

    /// The outcome of the earliest generation kept, and when: a created object's (a pod's
    /// Ready). A pod's generation moves on when its deletion is asked for, and the status that
    /// says so would otherwise date its Ready anew.
    pub fn first_outcome(&self) -> Option<(Outcome, Timestamp)> {
        let first = self.outcomes.iter().min_by_key(|o| o.generation)?;
        self.outcome_of(first.generation)
    }

    pub(super) fn new(observed_generation: i64) -> Self {
        StateSeen {
            observed_generation,
            outcomes: Vec::new(),
        }
    }

    /// Takes in what the status says now (`reason`: its outcome's reason, interned); true when
    /// it newly says the object is done (or failed), or moved on to a newer generation.
    pub(super) fn record(
        &mut self,
        state: &ObjectState,
        reason: Option<Arc<str>>,
        observed: Timestamp,
    ) -> bool {
        let mut changed = false;
        if state.observed_generation > self.observed_generation {
            self.observed_generation = state.observed_generation;
            changed = true;
        }
        if let (Some(outcome), Some(reason)) = (&state.outcome, reason)
            && !self.has_outcome(state.observed_generation)
        {
            // The condition's time is whole seconds, so it bounds the truth from above by a
            // second: a status seen long after it changed (listed at a restart) is dated by it.
            let at = state.since.map_or(observed, |since| {
                observed.min(since.saturating_add(Duration::from_secs(1)))
            });
            self.push(SeenOutcome {
                generation: state.observed_generation,
                kind: outcome.kind,
                reason,
                message: Box::from(outcome.message.as_str()),
                at,
            });
            changed = true;
        }
        changed
    }

    /// The object was deleted (`at`): that is the outcome of its generation if it had none.
    pub(super) fn note_deleted(&mut self, reason: Arc<str>, at: Timestamp) {
        let generation = self.observed_generation;
        if !self.has_outcome(generation) {
            self.push(SeenOutcome {
                generation,
                kind: OutcomeKind::Deleted,
                reason,
                message: Box::from(""),
                at,
            });
        }
    }

    /// What the record holds on the heap, for the object byte cap.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<StateSeen>()
            + self
                .outcomes
                .iter()
                .map(|o| std::mem::size_of::<SeenOutcome>() + o.message.len())
                .sum::<usize>()
    }

    fn has_outcome(&self, generation: i64) -> bool {
        self.outcomes.iter().any(|o| o.generation == generation)
    }

    fn push(&mut self, outcome: SeenOutcome) {
        if self.outcomes.len() == GENERATION_HISTORY {
            self.outcomes.remove(0);
        }
        // Exactly: a Vec's first push would make room for four.
        self.outcomes.reserve_exact(1);
        self.outcomes.push(outcome);
    }
}
