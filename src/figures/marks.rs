//! The statistics worker's side of the operators' marks: once a round it looks whether a mark
//! was added, edited or ended since the last it applied (the newest `seq` of the `mark` table,
//! against the gateway setting [`APPLIED`]); if so, it recomputes from the samples every closed
//! minute, hour and day that the mark covers now or covered before (the records' audit entries
//! follow their new content), and records them as corrections for the platform links that
//! already had them, in one transaction with the new [`APPLIED`]. A crash in between recomputes
//! again (the same records) and records the corrections then: none is lost.

use std::collections::BTreeMap;

use super::{Figures, SETTLE_S, WARM_UP, evaluate_range};
use crate::compute::Level;
use crate::compute::evaluate::period_start;
use crate::store::StoreError;

/// The gateway setting (scope `*`) holding the newest mark entry applied.
pub const APPLIED: &str = "marks_applied_seq";

impl Figures {
    /// Applies the marks changed since last time, at local time `now`.
    pub(super) fn apply_marks(&mut self, now: i64) -> Result<(), StoreError> {
        let Some(version) = self.store.marks_version()? else { return Ok(()) };
        let applied: i64 = self.store.setting("*", APPLIED)?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if version <= applied {
            return Ok(());
        }
        let config = self.config.clone();
        let offset = config.site.utc_offset_s;
        let local = |ms: i64| ms.div_euclid(1000) + offset;
        // Per outlet, the local spans whose flags changed: what a mark covers now and covered
        // before, up to now.
        let mut spans: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for (mark, before) in self.store.marks_changed_since(applied)? {
            if before == Some((mark.start_ms, mark.end_ms)) {
                // A new reason: no flag changes.
                continue;
            }
            let now_span = (local(mark.start_ms), mark.end_ms.map_or(now, local).min(now));
            let mut list = vec![now_span];
            if let Some((start, end)) = before {
                list.push((local(start), end.map_or(now, local).min(now)));
            }
            spans.entry(mark.outlet.clone()).or_default().extend(list.into_iter().filter(|(a, b)| a < b));
        }
        let mut corrections: Vec<(String, Vec<(Level, i64)>)> = Vec::new();
        for (name, spans) in spans {
            let Some(outlet) = config.outlet(&name) else { continue };
            if config.outlet_devices(&name).is_empty() {
                continue;
            }
            // Whole days: a day record is computed from its whole day.
            let mut days: Vec<i64> = spans
                .iter()
                .flat_map(|&(a, b)| {
                    let first = period_start(Level::Day, a);
                    (0..).map(move |k| first + k * 86_400).take_while(move |d| *d < b)
                })
                .collect();
            days.sort_unstable();
            days.dedup();
            let covered = |start: i64, len: i64| spans.iter().any(|&(a, b)| start < b && a < start + len);
            let mut periods: Vec<(Level, i64)> = Vec::new();
            for day in days {
                let end = (day + 86_400).min(now);
                let mut minutes = Vec::new();
                let (outcome, _) = evaluate_range(&self.store, &config, outlet, day - WARM_UP, end, |r| {
                    if r.start >= day && r.start + 60 <= now - SETTLE_S {
                        minutes.push(r.clone());
                    }
                })?;
                let hours: Vec<_> = outcome
                    .hours
                    .into_iter()
                    .filter(|h| h.start >= day && h.start + 3600 <= now - SETTLE_S)
                    .collect();
                let closed_days: Vec<_> = outcome
                    .days
                    .into_iter()
                    .filter(|d| d.start == day && d.start + 86_400 <= now - SETTLE_S)
                    .collect();
                for (level, records, len) in [
                    (Level::Minute, &minutes, 60),
                    (Level::Hour, &hours, 3600),
                    (Level::Day, &closed_days, 86_400),
                ] {
                    let mut starts: Vec<i64> =
                        records.iter().map(|r| r.start).filter(|s| covered(*s, len)).collect();
                    starts.dedup();
                    periods.extend(starts.into_iter().map(|s| (level, (s - offset) * 1000)));
                }
                self.store.upsert_records(&name, &minutes, offset)?;
                self.store.upsert_records(&name, &hours, offset)?;
                self.store.upsert_records(&name, &closed_days, offset)?;
            }
            tracing::info!(outlet = %name, periods = periods.len(), "Marks applied: the periods they cover were recomputed and go to the platforms again.");
            corrections.push((name, periods));
        }
        // The corrections and the new mark version together: a crash before this recomputes
        // again next round.
        let version = version.to_string();
        if corrections.is_empty() {
            self.store.set_setting("*", APPLIED, &version)?;
        }
        let n = corrections.len();
        for (i, (name, periods)) in corrections.into_iter().enumerate() {
            let done = (i + 1 == n).then_some(("*", APPLIED, version.as_str()));
            self.store.add_corrections(&name, &periods, done)?;
        }
        Ok(())
    }
}
