//! The daily run time of a pollution-control facility (HJ 212-2017 table 4 `SBxxx-RT`, hours,
//! 0 to 24, sent by CN 2041) from the stored samples of its run-status point (`SBxxx-RS`: 0
//! closed, 1 running, 2 calibrating, 3 maintenance, 4 alarm, 5 back-flushing). Pure.
//!
//! Each sample stands for the time until the next one, but for no longer than `max_hold_ms`
//! (a gap in the samples is time whose state is unknown, and unknown time is not run time). A
//! facility counts as running while its status is not 0, as the statistics count an outlet as
//! stopped only at 0 (the other states are states of a facility that is on). A sample without a
//! value (flag `B`) says nothing.

/// One run-status sample: Unix ms and value.
pub type Sample = (i64, Option<f64>);

/// Hours the facility ran in `[from_ms, to_ms)`, to two decimals (N2.2), from `samples` in time
/// order (those before `from_ms` count from `from_ms` on, within their hold).
pub fn run_hours(samples: &[Sample], from_ms: i64, to_ms: i64, max_hold_ms: i64) -> f64 {
    let mut ran_ms: i64 = 0;
    for (i, (ts, value)) in samples.iter().enumerate() {
        let Some(v) = value.filter(|v| v.is_finite()) else { continue };
        if v == 0.0 {
            continue;
        }
        let next = samples.get(i + 1).map_or(i64::MAX, |(t, _)| *t);
        let end = next.min(ts.saturating_add(max_hold_ms.max(0))).min(to_ms);
        let start = (*ts).max(from_ms);
        ran_ms += (end - start).max(0);
    }
    let hours = ran_ms as f64 / 3_600_000.0;
    ((hours * 100.0).round() / 100.0).clamp(0.0, 24.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_facility_running_all_day_ran_24_hours() {
        let samples: Vec<Sample> = (0..24 * 60).map(|m| (m * 60_000, Some(1.0))).collect();
        assert_eq!(run_hours(&samples, 0, 24 * H, 120_000), 24.0);
    }

    #[test]
    fn stopped_time_and_gaps_do_not_count() {
        // Running 0–6 h, stopped 6–8 h, running 8–10 h, then no samples at all.
        let mut samples: Vec<Sample> = (0..6 * 60).map(|m| (m * 60_000, Some(1.0))).collect();
        samples.extend((6 * 60..8 * 60).map(|m| (m * 60_000, Some(0.0))));
        samples.extend((8 * 60..10 * 60).map(|m| (m * 60_000, Some(1.0))));
        // The last sample (09:59) stands for its minute and its hold beyond: 10:00 to 10:01 too.
        assert_eq!(run_hours(&samples, 0, 24 * H, 60_000), 8.0);
        assert_eq!(run_hours(&samples, 0, 24 * H, 120_000), 8.02);
    }

    #[test]
    fn the_hold_is_clipped_to_the_day_and_unknown_samples_say_nothing() {
        // A sample from before the day counts from midnight; the day's end cuts the last one.
        let samples =
            [(-30_000, Some(1.0)), (60_000, None), (90_000, Some(5.0)), (24 * H - 60_000, Some(1.0))];
        let hours = run_hours(&samples, 0, 24 * H, 120_000);
        // 60 s from midnight to the B sample, 120 s of back-flushing (its hold), 60 s at the end.
        assert_eq!(hours, ((240_000.0 / H as f64) * 100.0_f64).round() / 100.0);
        // With a one-hour hold the back-flush sample covers an hour of the gap that follows it.
        assert_eq!(run_hours(&samples, 0, 24 * H, H), 1.03);
        assert_eq!(run_hours(&[], 0, 24 * H, 120_000), 0.0);
    }

    #[test]
    fn the_result_stays_within_a_day_whatever_the_input() {
        let samples = [(0, Some(f64::NAN)), (10, Some(f64::INFINITY)), (20, Some(1.0))];
        assert_eq!(run_hours(&samples, 0, 24 * H, i64::MAX), 24.0);
        assert_eq!(run_hours(&[(0, Some(1.0))], 0, 24 * H, -5), 0.0);
    }
}
