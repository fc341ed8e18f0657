//! Loop detection over a session's recent calls: the same call again and again, short cycles, and retries that make no progress.
//!
//! Each step is a call (tool and canonical arguments, digested) and what
//! it answered. A call is a loop when the window already holds
//! `max_similar` of it, where a repeat that got the same answer as the
//! one before it (no progress) counts 1 and a repeat that got a different
//! answer (a retry that may be getting somewhere) counts ½. A short cycle
//! (A B A B …, period 2 to 4) is a loop once it has gone round
//! `max_similar` times and the next call would go round again.

use serde::Serialize;

use crate::backend::Step;

/// The longest cycle looked for.
pub const MAX_PERIOD: usize = 4;

/// When a session's calls count as a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoopRule {
    /// How many times one call may already be in the window (the seed's 3).
    pub max_similar: u32,
    /// How many recent calls the window holds (the seed's 10).
    pub window: u32,
    /// Whether short cycles count too.
    pub cycles: bool,
}

impl Default for LoopRule {
    fn default() -> Self {
        Self {
            max_similar: 3,
            window: 10,
            cycles: true,
        }
    }
}

impl LoopRule {
    /// How many steps the history must hold for this rule.
    pub fn history_len(&self) -> usize {
        let window = usize::try_from(self.window).unwrap_or(usize::MAX);
        let similar = usize::try_from(self.max_similar).unwrap_or(usize::MAX);
        if self.cycles {
            window.max(similar.saturating_mul(MAX_PERIOD))
        } else {
            window
        }
    }
}

/// A loop found, in words the agent can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loop {
    /// The same call, `times` times in the last `window` calls, `stalled`
    /// of which got the same answer as the time before.
    Repeat {
        times: usize,
        stalled: usize,
        window: u32,
    },
    /// A cycle of `period` calls gone round `rounds` times.
    Cycle { period: usize, rounds: u32 },
}

impl Loop {
    pub fn explain(&self) -> String {
        match self {
            Loop::Repeat {
                times,
                stalled,
                window,
            } if *stalled + 1 >= *times => format!(
                "this exact call was made {times} times in the last {window} calls and got the same answer each time; change the arguments or try a different approach"
            ),
            Loop::Repeat { times, window, .. } => format!(
                "this exact call was made {times} times in the last {window} calls; change the arguments or try a different approach"
            ),
            Loop::Cycle { period, rounds } => format!(
                "the last {} calls repeat a cycle of {period} calls {rounds} times; this call would start it again",
                period * usize::try_from(*rounds).unwrap_or(usize::MAX)
            ),
        }
    }
}

/// Whether `next` would make a loop after `history` (oldest first).
pub fn detect(history: &[Step], next: u64, rule: &LoopRule) -> Option<Loop> {
    if rule.max_similar == 0 {
        return None;
    }
    let window = usize::try_from(rule.window).unwrap_or(usize::MAX);
    let recent = history
        .get(history.len().saturating_sub(window)..)
        .unwrap_or(history);
    // In halves: 2 for the first and for each repeat that made no progress, 1 for a retry.
    let (mut score, mut times, mut stalled, mut last): (u64, usize, usize, Option<Option<u64>>) =
        (0, 0, 0, None);
    for step in recent.iter().filter(|step| step.call == next) {
        times += 1;
        let progress = match (last, step.answer) {
            (Some(Some(before)), Some(now)) => before != now,
            _ => false,
        };
        if last.is_some() && !progress {
            stalled += 1;
        }
        score += if progress { 1 } else { 2 };
        last = Some(step.answer);
    }
    if score >= 2 * u64::from(rule.max_similar) {
        return Some(Loop::Repeat {
            times,
            stalled,
            window: rule.window,
        });
    }
    if rule.cycles {
        let rounds = usize::try_from(rule.max_similar).unwrap_or(usize::MAX);
        for period in 2..=MAX_PERIOD {
            if cycles(history, next, period, rounds) {
                return Some(Loop::Cycle {
                    period,
                    rounds: rule.max_similar,
                });
            }
        }
    }
    None
}

/// The last `period × rounds` steps repeat with `period`, not all one call,
/// and `next` goes round again.
fn cycles(history: &[Step], next: u64, period: usize, rounds: usize) -> bool {
    let span = period.saturating_mul(rounds);
    let Some(tail) = history
        .len()
        .checked_sub(span)
        .and_then(|from| history.get(from..))
    else {
        return false;
    };
    let calls: Vec<u64> = tail.iter().map(|step| step.call).collect();
    let periodic = calls
        .iter()
        .zip(calls.iter().skip(period))
        .all(|(a, b)| a == b);
    let one_call = calls.windows(2).all(|pair| pair.first() == pair.get(1));
    // A shorter period would have matched first; a cycle is not one call repeated.
    periodic && !one_call && calls.first() == Some(&next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(call: u64, answer: u64) -> Step {
        Step {
            call,
            answer: Some(answer),
        }
    }

    #[test]
    fn the_fourth_identical_call_with_no_progress_is_a_loop() {
        let rule = LoopRule::default();
        let mut history = vec![];
        for _ in 0..3 {
            assert_eq!(detect(&history, 1, &rule), None);
            history.push(step(1, 9));
        }
        let found = detect(&history, 1, &rule).unwrap();
        assert!(
            matches!(
                found,
                Loop::Repeat {
                    times: 3,
                    stalled: 2,
                    ..
                }
            ),
            "{found:?}"
        );
        assert!(
            found.explain().contains("same answer"),
            "{}",
            found.explain()
        );
    }

    #[test]
    fn retries_with_new_answers_count_half() {
        let rule = LoopRule::default();
        let mut history = vec![];
        // 2 + 1 + 1 + 1 = 5 halves after four: a fifth still passes.
        for answer in 0..5 {
            assert_eq!(detect(&history, 1, &rule), None, "after {answer}");
            history.push(step(1, answer));
        }
        // 2 + 1 × 4 = 6 halves: the sixth is refused.
        assert!(matches!(
            detect(&history, 1, &rule),
            Some(Loop::Repeat { times: 5, .. })
        ));
    }

    #[test]
    fn calls_outside_the_window_are_forgotten() {
        let rule = LoopRule::default();
        let mut history = vec![step(1, 0), step(1, 0), step(1, 0)];
        history.extend((10..20).map(|c| step(c, 0)));
        assert_eq!(detect(&history, 1, &rule), None);
    }

    #[test]
    fn cycles_of_two_to_four_are_loops_after_three_rounds() {
        let rule = LoopRule::default();
        for period in 2..=4u64 {
            let mut history: Vec<Step> = vec![];
            for i in 0..(3 * period) {
                let next = i % period + 100;
                assert_eq!(
                    detect(&history, next, &rule),
                    None,
                    "period {period}, call {i}"
                );
                history.push(step(next, i));
            }
            let found = detect(&history, 100, &rule);
            assert_eq!(
                found,
                Some(Loop::Cycle {
                    period: period as usize,
                    rounds: 3
                })
            );
            // Breaking the cycle is fine.
            assert_eq!(detect(&history, 999, &rule), None);
        }
    }

    #[test]
    fn an_unknown_answer_is_no_progress() {
        let rule = LoopRule::default();
        let history = vec![
            Step {
                call: 1,
                answer: None
            };
            3
        ];
        assert!(detect(&history, 1, &rule).is_some());
    }

    #[test]
    fn thresholds_are_per_rule_and_zero_is_off() {
        let strict = LoopRule {
            max_similar: 1,
            ..LoopRule::default()
        };
        assert!(detect(&[step(1, 0)], 1, &strict).is_some());
        let off = LoopRule {
            max_similar: 0,
            ..LoopRule::default()
        };
        assert_eq!(detect(&vec![step(1, 0); 10], 1, &off), None);
    }
}
