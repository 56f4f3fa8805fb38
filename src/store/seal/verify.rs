//! Checking raw samples against their seals (see the parent module): `verify`'s half for
//! samples, series and prunes.

use rusqlite::{Connection, params};

use super::{
    MINUTE_MS, MinuteDigest, detail_field, detail_rows, minute_of, minute_subject, parse_minute_subject,
    prune_cutoff, series_detail,
};
use crate::store::audit::{self, AuditKind, BrokenLink};

/// The outcome of checking the samples against their seals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleCheck {
    /// Sealed minutes whose rows match their latest seal.
    pub minutes: u64,
    /// Sealed minutes whose rows were pruned by retention.
    pub pruned: u64,
    /// Minutes with rows newer than the newest seal (sealed when they settle).
    pub pending: u64,
    /// Minutes with rows stored before samples were chained.
    pub unchained: u64,
    pub faults: Vec<BrokenLink>,
}

/// One prune of samples, as its entry records it.
struct Prune {
    seq: i64,
    cutoff: i64,
}

/// A minute's latest seal: (minute, seq, detail).
type Seal = (i64, i64, String);

/// The seals of a range in minute order, each minute's latest only.
struct Seals<'s> {
    rows: rusqlite::Rows<'s>,
    ahead: Option<Seal>,
}

impl Seals<'_> {
    fn next_row(&mut self) -> rusqlite::Result<Option<Seal>> {
        while let Some(row) = self.rows.next()? {
            let subject: String = row.get(0)?;
            let Some(minute) = parse_minute_subject(&subject) else { continue };
            return Ok(Some((minute, row.get(1)?, row.get(2)?)));
        }
        Ok(None)
    }

    /// The next minute's latest seal (entries come by subject, then seq).
    fn next(&mut self) -> rusqlite::Result<Option<Seal>> {
        let Some(mut current) = self.ahead.take().map_or_else(|| self.next_row(), |s| Ok(Some(s)))? else {
            return Ok(None);
        };
        loop {
            match self.next_row()? {
                Some(s) if s.0 == current.0 => current = s,
                other => {
                    self.ahead = other;
                    return Ok(Some(current));
                }
            }
        }
    }
}

/// Judges minutes: their rows (if any) against their latest seal (if any).
struct Judge {
    prunes: Vec<Prune>,
    unchained_before: i64,
    sealed_through: i64,
    check: SampleCheck,
}

impl Judge {
    fn judge(&mut self, minute: i64, found: Option<MinuteDigest>, sealed: Option<Seal>) {
        let subject = format!("samples {}", minute_subject(minute));
        let check = &mut self.check;
        match (found, sealed) {
            (Some(found), Some((_, seq, chained))) => {
                let n_found = found.n;
                if found.detail() == chained {
                    check.minutes += 1;
                    return;
                }
                let n_chained = detail_rows(&chained).unwrap_or(0);
                let what = match n_found.cmp(&n_chained) {
                    std::cmp::Ordering::Less => "deleted",
                    std::cmp::Ordering::Greater => "inserted",
                    std::cmp::Ordering::Equal => "edited",
                };
                check.faults.push(BrokenLink {
                    seq: Some(seq),
                    subject,
                    reason: format!(
                        "the sample rows differ from their seal ({n_chained} rows sealed, {n_found} found): \
                         rows {what} outside the gateway"
                    ),
                });
            }
            (None, Some((_, seq, chained))) => {
                if self.prunes.iter().any(|p| p.seq > seq && minute < p.cutoff) {
                    check.pruned += 1;
                } else {
                    check.faults.push(BrokenLink {
                        seq: Some(seq),
                        subject,
                        reason: format!(
                            "the {} sealed sample rows are gone and no retention explains it: deleted outside the gateway",
                            detail_rows(&chained).unwrap_or(0)
                        ),
                    });
                }
            }
            (Some(_), None) if minute < self.unchained_before => check.unchained += 1,
            (Some(_), None) if minute < self.sealed_through => check.faults.push(BrokenLink {
                seq: None,
                subject,
                reason: "sample rows in a minute that was never sealed: inserted outside the gateway".into(),
            }),
            (Some(_), None) => check.pending += 1,
            (None, None) => {}
        }
    }

    /// Judges `minute`'s rows, after every sealed minute before it (those have no rows left).
    fn minute(
        &mut self,
        seals: &mut Seals<'_>,
        next: &mut Option<Seal>,
        minute: i64,
        found: Option<MinuteDigest>,
    ) -> rusqlite::Result<()> {
        while next.as_ref().is_some_and(|s| s.0 < minute) {
            let sealed = next.take();
            *next = seals.next()?;
            self.judge(sealed.as_ref().map_or(minute, |s| s.0), None, sealed);
        }
        let sealed = if next.as_ref().is_some_and(|s| s.0 == minute) {
            let sealed = next.take();
            *next = seals.next()?;
            sealed
        } else {
            None
        };
        if found.is_some() || sealed.is_some() {
            self.judge(minute, found, sealed);
        }
        Ok(())
    }
}

/// Checks every minute of samples starting in `[from, to)` against its latest seal, the
/// series against their entries, and the prunes against their rules.
pub(in crate::store) fn verify_samples(
    conn: &Connection,
    from: i64,
    to: i64,
) -> rusqlite::Result<SampleCheck> {
    let mut judge = Judge {
        prunes: Vec::new(),
        unchained_before: i64::MIN,
        sealed_through: i64::MIN,
        check: SampleCheck::default(),
    };
    {
        let mut stmt = conn.prepare(
            "SELECT seq, ts_ms, detail FROM audit WHERE kind = 'retention' AND subject = 'sample' ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (seq, at_ms, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let Some(cutoff) = prune_cutoff(&detail) else { continue };
            let within = match detail_field(&detail, "rule") {
                Some("age") => detail_field(&detail, "max_age_s")
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some_and(|age| cutoff <= at_ms - age * 1000),
                Some("size") => {
                    let n = |k| detail_field(&detail, k).and_then(|s| s.parse::<u64>().ok());
                    n("used").zip(n("max")).is_some_and(|(used, max)| used > max)
                }
                Some("unchained") => {
                    judge.unchained_before = judge.unchained_before.max(cutoff);
                    true
                }
                _ => false,
            };
            if !within && (from..to).contains(&at_ms) {
                judge.check.faults.push(BrokenLink {
                    seq: Some(seq),
                    subject: "retention sample".into(),
                    reason: format!("a prune outside the retention rules ({detail})"),
                });
            }
            judge.prunes.push(Prune { seq, cutoff });
        }
    }
    let newest: Option<String> =
        conn.query_row("SELECT max(subject) FROM audit WHERE kind = 'samples'", [], |r| r.get(0))?;
    judge.sealed_through =
        newest.as_deref().and_then(parse_minute_subject).map_or(i64::MIN, |m| m + MINUTE_MS);

    let mut seals_stmt = conn.prepare(
        "SELECT subject, seq, detail FROM audit WHERE kind = 'samples' AND subject >= ?1 AND subject < ?2 \
         ORDER BY subject, seq",
    )?;
    let mut seals =
        Seals { rows: seals_stmt.query(params![subject_bound(from), subject_bound(to)])?, ahead: None };
    let mut next = seals.next()?;
    // Rows in table order. A whole-table walk also meets rows whose time is not an integer
    // (SQLite sorts text after numbers), which no range would.
    let whole = from == i64::MIN && to == i64::MAX;
    let mut stmt = if whole {
        conn.prepare("SELECT ts, series, value, flag FROM sample ORDER BY ts, series")?
    } else {
        conn.prepare(
            "SELECT ts, series, value, flag FROM sample WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, series",
        )?
    };
    let mut rows = if whole { stmt.query([])? } else { stmt.query(params![from, to])? };
    let mut current: Option<(i64, MinuteDigest)> = None;
    while let Some(row) = rows.next()? {
        let rusqlite::types::ValueRef::Integer(ts) = row.get_ref(0)? else {
            judge.check.faults.push(BrokenLink {
                seq: None,
                subject: "samples".into(),
                reason: "a sample row whose time is not an integer: inserted or edited outside the gateway"
                    .into(),
            });
            continue;
        };
        let minute = minute_of(ts);
        if current.as_ref().is_none_or(|(m, _)| *m != minute) {
            if let Some((m, found)) = current.take() {
                judge.minute(&mut seals, &mut next, m, Some(found))?;
            }
            current = Some((minute, MinuteDigest::new()));
        }
        current.as_mut().expect("set above").1.push(row)?;
    }
    if let Some((m, found)) = current.take() {
        judge.minute(&mut seals, &mut next, m, Some(found))?;
    }
    judge.minute(&mut seals, &mut next, i64::MAX, None)?;
    verify_series(conn, &mut judge.check)?;
    Ok(judge.check)
}

/// The smallest subject at or after `ms` (a range bound over seal subjects).
fn subject_bound(ms: i64) -> String {
    match ms {
        i64::MIN => String::new(),
        i64::MAX => "~".into(),
        ms => minute_subject(minute_of(ms + MINUTE_MS - 1)),
    }
}

/// Every series against its latest `series` entry: rows refer to series by number, so a renamed
/// series would change what every one of its samples means.
fn verify_series(conn: &Connection, check: &mut SampleCheck) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id, device, factor FROM series ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, device, factor): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let subject = id.to_string();
        match audit::latest(conn, AuditKind::Series, &subject)? {
            Some((_, d)) if d == series_detail(&device, &factor) => {}
            Some((seq, _)) => check.faults.push(BrokenLink {
                seq: Some(seq),
                subject: format!("series {id}"),
                reason: "the series differs from its chained device and factor: edited outside the gateway"
                    .into(),
            }),
            None => check.faults.push(BrokenLink {
                seq: None,
                subject: format!("series {id}"),
                reason: "a series that was never chained: inserted outside the gateway".into(),
            }),
        }
    }
    Ok(())
}
