//! How many connections work a backfill at once, and how gently.
//!
//! One UPDATE runs on one backend, one core. Slices of the table worked side by side use more
//! of the server, until they contend for what they share (cores, WAL, disk) or slow the
//! application. With `--backfill-workers N` the count is fixed. By default zdm starts with two
//! workers and, once per window, looks at the rows per second the workers made together, their
//! batches' durations, and whether any other session of the database was active. With nobody
//! else working it adds a worker and keeps it only if the rows per second rose, and drops one
//! when the batches grow far past their target (the server is saturated).
//!
//! **Gentle while the application works.** A commit flushes the WAL up to its own record, so
//! an application's commit that follows a backfill batch flushes the batch's WAL first: on a
//! two-core server the application's commits went from 0.8 ms to 2.4 ms (median) and 12 ms
//! (p99) with two workers at full speed, its sessions waiting on `WALSync` and `WALWrite`. So
//! while other sessions are active, one worker runs batches of at most [`GENTLE_BATCH`] that
//! wait for their own flush: the application's p99 stayed within 1.2–1.8× its baseline
//! (docs/benchmarks.md). On an idle server (a maintenance window, the benchmark's throughput
//! runs) nobody waits, and the backfill runs at full speed.

use std::time::Duration;

/// How long the workers run between two decisions.
pub(super) const WINDOW: Duration = Duration::from_millis(300);

/// The rows per second an added worker must bring to be kept: 20% more. Where cores are free
/// a third worker brings 50% and a fourth 33%; a smaller gain is within the noise of two
/// windows and not worth the contention it adds for the application.
const KEEP_GAIN: f64 = 1.20;

/// Windows to wait after a worker was dropped because the server looked busy.
const HOLD_AFTER_DROP: u32 = 3;

/// The figures of one window.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub rows_per_second: f64,
    /// The mean batch duration, against the target the batch size adapts to.
    pub mean_batch: Duration,
    /// Whether another session of the database was active during the window.
    pub others_active: bool,
}

/// The batch duration while the application works: a batch's WAL is what the application's
/// next commit may have to flush, so it is kept small.
pub(super) const GENTLE_BATCH: Duration = Duration::from_millis(2);

/// The batch duration to aim at: the configured one, or at most [`GENTLE_BATCH`] while other
/// sessions work (a configured 0, a fixed batch size, stays).
pub(super) fn batch_target(configured: Duration, gentle: bool) -> Duration {
    if gentle && !configured.is_zero() {
        configured.min(GENTLE_BATCH)
    } else {
        configured
    }
}

/// Windows in a row with other sessions active before the backfill turns gentle, and without
/// before it turns back: one query a moment before (a deploy script's, the benchmark's own
/// setup) is not an application.
const ACTIVE_WINDOWS: u32 = 2;

/// The worker count decision, one window at a time.
#[derive(Debug)]
pub(super) struct Pace {
    fixed: bool,
    /// Workers wanted now.
    pub target: usize,
    /// No more than this: the configured most, lowered when a worker brought nothing.
    ceiling: usize,
    target_batch: Duration,
    /// Rows per second of the windows since the count last changed (after the first, in
    /// which a new worker connects and ramps up): one window is noisy, so two decide.
    rates: Vec<f64>,
    /// After an added worker: the rows per second before it, to compare with.
    before_add: Option<f64>,
    /// Whether the batches are gentle now (other sessions are active).
    pub gentle: bool,
    /// Windows in a row whose activity disagreed with `gentle`.
    switching: u32,
    /// Windows to let pass without a change.
    hold: u32,
    /// The last few windows' mean batch durations, likewise: one checkpoint or one lock wait
    /// makes a window's batches slow without the server being busy.
    batches: Vec<Duration>,
}

/// Adds a figure to the last few and returns the second largest of the last three (their
/// median), so that two windows must agree; zero while there is only one.
fn second_largest_of_last_three(last: &mut Vec<Duration>, figure: Duration) -> Duration {
    last.push(figure);
    if last.len() > 3 {
        last.remove(0);
    }
    let mut sorted = last.clone();
    sorted.sort();
    sorted
        .len()
        .checked_sub(2)
        .map_or(Duration::ZERO, |i| sorted[i])
}

/// Windows measured at one count before it is judged.
const JUDGE_AFTER: usize = 2;

impl Pace {
    /// A fixed count of workers.
    pub fn fixed(workers: usize) -> Pace {
        let workers = workers.max(1);
        Pace {
            fixed: true,
            target: workers,
            ..Pace::adaptive(workers, Duration::ZERO)
        }
    }

    /// Two workers to start with (one when `most` is one), at most `most`.
    pub fn adaptive(most: usize, target_batch: Duration) -> Pace {
        let most = most.max(1);
        Pace {
            fixed: false,
            target: most.min(2),
            ceiling: most,
            target_batch,
            rates: Vec::new(),
            before_add: None,
            gentle: false,
            switching: 0,
            hold: 1,
            batches: Vec::new(),
        }
    }

    /// The most workers this backfill may have at once: how large the pool must be.
    pub fn most(&self) -> usize {
        self.ceiling
    }

    /// Starts gentle when other sessions are working as the backfill begins, with one
    /// worker: the first windows at full speed would be the application's slowest.
    pub fn start(&mut self, others_active: bool) {
        self.gentle = others_active;
        if others_active && !self.fixed {
            self.target = 1;
        }
    }

    /// The batch duration the batches aim at now.
    #[cfg(test)]
    fn batch_target(&self) -> Duration {
        batch_target(self.target_batch, self.gentle)
    }

    /// Follows the other sessions' activity, [`ACTIVE_WINDOWS`] windows in a row to switch.
    fn follow_activity(&mut self, others_active: bool) {
        if others_active == self.gentle {
            self.switching = 0;
            return;
        }
        self.switching += 1;
        if self.switching >= ACTIVE_WINDOWS {
            self.gentle = others_active;
            self.switching = 0;
            // The figures so far were taken at the other pace.
            self.batches.clear();
            self.before_add = None;
            self.hold = 1;
        }
    }

    fn change_to(&mut self, target: usize, hold: u32) -> usize {
        self.target = target;
        self.rates.clear();
        self.hold = hold;
        target
    }

    /// Takes one window's figures and returns the workers wanted for the next.
    pub fn after(&mut self, w: Window) -> usize {
        self.follow_activity(w.others_active);
        if self.fixed {
            return self.target;
        }
        if self.gentle {
            // One worker while the application works: a second, even with short batches that
            // wait for their flush, took the application's p99 from 1.6× to 2.1× its baseline.
            return self.change_to(1, 0);
        }
        let batch = second_largest_of_last_three(&mut self.batches, w.mean_batch);
        let target_batch = batch_target(self.target_batch, self.gentle);
        let busy = !target_batch.is_zero() && batch > target_batch * 3;
        if busy && self.target > 1 {
            // Busy right after an addition: that worker is one the server has no room for.
            if self.before_add.take().is_some() {
                self.ceiling = self.target - 1;
            }
            return self.change_to(self.target - 1, HOLD_AFTER_DROP);
        }
        if self.hold > 0 {
            self.hold -= 1;
            return self.target;
        }
        self.rates.push(w.rows_per_second);
        if self.rates.len() < JUDGE_AFTER {
            return self.target;
        }
        let rate = self.rates.iter().sum::<f64>() / self.rates.len() as f64;
        if let Some(before) = self.before_add.take()
            && rate < before * KEEP_GAIN
        {
            // The last worker added brought too little: the server is saturated at one fewer.
            self.ceiling = self.target - 1;
            return self.change_to(self.target - 1, 0);
        }
        if self.target < self.ceiling && !busy {
            self.before_add = Some(rate);
            // The window after an addition has the new worker starting up: judge the next.
            return self.change_to(self.target + 1, 1);
        }
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rows_per_second: f64) -> Window {
        Window {
            rows_per_second,
            mean_batch: Duration::from_millis(50),
            others_active: false,
        }
    }

    #[test]
    fn adds_workers_while_they_pay_and_keeps_the_last_that_did() {
        let mut p = Pace::adaptive(4, Duration::from_millis(50));
        assert_eq!(p.target, 2);
        assert_eq!(p.after(window(90.0)), 2, "the window the workers start in");
        assert_eq!(p.after(window(100.0)), 2);
        assert_eq!(
            p.after(window(100.0)),
            3,
            "two windows at 100: one more tried"
        );
        assert_eq!(p.after(window(120.0)), 3);
        assert_eq!(p.after(window(150.0)), 3);
        assert_eq!(p.after(window(150.0)), 4, "1.5x: kept, and one more tried");
        assert_eq!(p.after(window(150.0)), 4);
        assert_eq!(p.after(window(155.0)), 4);
        assert_eq!(p.after(window(155.0)), 3, "a fourth brought nothing");
        for _ in 0..10 {
            assert_eq!(p.after(window(150.0)), 3, "and is not tried again");
        }
    }

    #[test]
    fn drops_a_worker_when_the_server_is_busy_and_waits_before_adding() {
        let mut p = Pace::adaptive(4, Duration::from_millis(50));
        let slow = Window {
            mean_batch: Duration::from_millis(400),
            ..window(100.0)
        };
        p.after(window(100.0));
        assert_eq!(p.after(slow), 2, "one slow window is noise");
        assert_eq!(p.after(slow), 1);
        assert_eq!(p.after(slow), 1, "never below one");
        for _ in 0..3 {
            assert_eq!(p.after(window(100.0)), 1, "holds, then measures");
        }
        assert_eq!(p.after(window(100.0)), 2, "tries again once quiet");
    }

    #[test]
    fn while_other_sessions_work_one_gentle_worker_then_full_speed_again() {
        let mut p = Pace::adaptive(4, Duration::from_millis(50));
        p.start(true);
        assert!(p.gentle);
        assert_eq!(p.target, 1, "gentle from the first batch, with one worker");
        assert_eq!(p.batch_target(), GENTLE_BATCH);
        let active = Window {
            others_active: true,
            ..window(100.0)
        };
        for _ in 0..5 {
            assert_eq!(p.after(active), 1);
        }
        // The application stops: one quiet window could be a pause, two switch back.
        assert_eq!(p.after(window(100.0)), 1);
        assert!(p.gentle);
        p.after(window(100.0));
        assert!(!p.gentle, "two quiet windows: full speed");
        assert_eq!(p.batch_target(), Duration::from_millis(50));
        for _ in 0..3 {
            p.after(window(100.0));
        }
        assert_eq!(p.target, 2, "workers are added again");
        // One query by someone else is not an application.
        p.after(active);
        assert!(!p.gentle);
        p.after(active);
        assert!(p.gentle);
        assert_eq!(p.after(active), 1);
        // A fixed count stays, but its batches turn gentle too.
        let mut f = Pace::fixed(3);
        f.start(true);
        assert_eq!((f.target, f.gentle), (3, true));
        assert_eq!(
            batch_target(Duration::ZERO, true),
            Duration::ZERO,
            "a fixed batch size stays"
        );
    }

    #[test]
    fn slow_batches_count_as_busy_and_a_fixed_count_never_moves() {
        let mut p = Pace::adaptive(4, Duration::from_millis(50));
        let slow = Window {
            mean_batch: Duration::from_millis(400),
            ..window(100.0)
        };
        assert_eq!(p.after(slow), 2, "one slow window is noise");
        assert_eq!(p.after(slow), 1);
        let mut f = Pace::fixed(3);
        assert_eq!(f.after(slow), 3);
        assert_eq!(f.most(), 3);
        assert_eq!(Pace::adaptive(1, Duration::ZERO).target, 1);
    }
}
