//! The audit log: an append-only, hash-chained account of everything a regulator relies on.
//!
//! Each entry is `(seq, ts_ms, kind, subject, detail)` with
//! `hash = SHA-256(prev_hash ‖ seq ‖ ts_ms ‖ kind ‖ subject ‖ detail)` (integers big-endian,
//! strings length-prefixed; the first entry's `prev_hash` is 32 zero bytes). Changing, removing
//! or inserting an entry breaks the link to the next one. SQL triggers refuse UPDATE and DELETE
//! on the table; [`Store::verify_chain`] catches whoever drops them.
//!
//! What is chained, always in the same transaction as the change it describes:
//! - `record`: a minute/hour/day period (`level/start_ms/outlet`) whenever the content of its
//!   rows changes, with the SHA-256 of their canonical content. The figures worker rewrites
//!   recent periods every minute; an unchanged period adds nothing, so the chain stays small
//!   and append-only, and a record row edited later no longer matches its last chained hash.
//! - `retention`: records deleted by age (`start<CUTOFF`), so that a missing period is
//!   explained only by a retention entry that came after it.
//! - `analyzer`: a device's state (worst flag of a poll, `T` counted as normal) when it
//!   changes, e.g. `N->C`.
//! - `config`: the hash of the effective configuration at each pipeline start and reload.
//! - `clock` and `platform`: time set by a platform, and every platform command (a pushed SM4
//!   key shown as `<secret>`), including an MN assigned by the platform (HJ 212-2025).
//! - `key`: an SM4 key rotation, with the new key's creation time, never the key.
//! - `migration`: a schema migration that rewrote stored records (the flow's move to m³/s),
//!   followed by a `record` entry for every period it changed.
//! - `parameter`: a key analyzer parameter read with a new value (range, slope, calibration
//!   time…), with the previous one; its row in the `parameter` table carries the entry's seq.
//! - `mark`: an operator mark added, edited or ended, with its whole content; the `mark` row
//!   holds the content of its newest entry.
//!
//! A chain proves nothing against someone who rewrites it from the edit to the head; the head
//! hash (shown by `verify` and the status page) is the anchor to note down or send elsewhere.

use std::fmt;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::model::now_ms;

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Record,
    Retention,
    Analyzer,
    Config,
    Clock,
    Platform,
    /// An HJ 212-2025 SM4 key change (never the key itself).
    Key,
    /// A schema migration that changed stored records (what and why).
    Migration,
    /// A key analyzer parameter read with a new value (`store::params`).
    Parameter,
    /// An operator mark added, edited or ended (`store::marks`).
    Mark,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Record => "record",
            AuditKind::Retention => "retention",
            AuditKind::Analyzer => "analyzer",
            AuditKind::Config => "config",
            AuditKind::Clock => "clock",
            AuditKind::Platform => "platform",
            AuditKind::Key => "key",
            AuditKind::Migration => "migration",
            AuditKind::Parameter => "parameter",
            AuditKind::Mark => "mark",
        }
    }
}

/// The state of the chain: what `verify` prints and the status page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Entries whose links were checked.
    pub entries: u64,
    /// The newest entry and its hash (hex): the anchor to compare with a copy kept elsewhere.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// Record periods whose rows were compared with their last chained content.
    pub record_periods: u64,
    pub verified: bool,
    pub first_broken: Option<BrokenLink>,
}

/// Where the chain stops proving anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The entry at fault, or (None) a record period that was never chained.
    pub seq: Option<i64>,
    pub subject: String,
    pub reason: String,
}

impl BrokenLink {
    /// For people: the entry by number, a record period by outlet, level and local start
    /// (`entry 4, the minute record of outlet "kiln" from 2026-01-01 08:03: …`).
    pub fn describe(&self, utc_offset_s: i64) -> String {
        let what = match self.subject.strip_prefix("record ").and_then(parse_record_subject) {
            Some((level, start_ms, outlet)) => {
                let local = crate::report::format_local(start_ms.div_euclid(1000) + utc_offset_s);
                let (name, start) = match level {
                    0 => ("minute", local.as_str()),
                    1 => ("hour", local.as_str()),
                    _ => ("day", local.get(..10).unwrap_or(&local)),
                };
                format!("the {name} record of outlet \"{outlet}\" from {start}")
            }
            None => self.subject.clone(),
        };
        match self.seq {
            Some(seq) => format!("entry {seq}, {what}: {}", self.reason),
            None => format!("{what}: {}", self.reason),
        }
    }
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq} ({}): {}", self.subject, self.reason),
            None => write!(f, "{}: {}", self.subject, self.reason),
        }
    }
}

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of one entry.
pub fn entry_hash(prev: &[u8], seq: i64, ts_ms: i64, kind: &str, subject: &str, detail: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(ts_ms.to_be_bytes());
    for s in [kind, subject, detail] {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subject of a record period.
pub fn record_subject(level: u8, start_ms: i64, outlet: &str) -> String {
    format!("{level}/{start_ms}/{outlet}")
}

fn parse_record_subject(s: &str) -> Option<(u8, i64, &str)> {
    let mut parts = s.splitn(3, '/');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?))
}

/// The record columns that make up a period's content, in hashing order.
const RECORD_COLUMNS: &str =
    "factor, n_total, n_valid, min, avg, max, zs_avg, cou, flag, lim, exceeded, zs_min, zs_max, valid";
/// How many they are.
const N_RECORD_COLUMNS: usize = 14;

/// Adds one row's columns to a content hash: every value with its SQLite type, so that an edit
/// that changes only a type (5 → '5') still shows.
fn hash_row(h: &mut Sha256, row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<()> {
    for i in first..first + N_RECORD_COLUMNS {
        match row.get_ref(i)? {
            ValueRef::Null => h.update([0]),
            ValueRef::Integer(v) => {
                h.update([1]);
                h.update(v.to_be_bytes());
            }
            ValueRef::Real(v) => {
                h.update([2]);
                h.update(v.to_bits().to_be_bytes());
            }
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                h.update([3]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t);
            }
        }
    }
    Ok(())
}

/// The content hash (hex) of a record period's rows, or None when it has none.
fn period_hash(
    conn: &Connection,
    level: u8,
    outlet: &str,
    start_ms: i64,
) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM record WHERE level = ?1 AND outlet = ?2 AND start = ?3 ORDER BY factor"
    ))?;
    let mut rows = stmt.query(params![level, outlet, start_ms])?;
    let mut h = Sha256::new();
    let mut any = false;
    while let Some(row) = rows.next()? {
        hash_row(&mut h, row, 0)?;
        any = true;
    }
    Ok(any.then(|| hex(&h.finalize())))
}

/// The detail of the newest entry of `kind` about `subject`, with its seq.
fn latest(conn: &Connection, kind: AuditKind, subject: &str) -> rusqlite::Result<Option<(i64, String)>> {
    conn.prepare_cached(
        "SELECT seq, detail FROM audit WHERE kind = ?1 AND subject = ?2 ORDER BY seq DESC LIMIT 1",
    )?
    .query_row(params![kind.as_str(), subject], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

/// Appends one entry on `conn`, which must be inside a write transaction (so that no other
/// connection appends between reading the head and inserting).
pub(super) fn append(
    conn: &Connection,
    kind: AuditKind,
    subject: &str,
    detail: &str,
) -> rusqlite::Result<i64> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = last.map_or((1, GENESIS.to_vec()), |(s, h)| (s + 1, h));
    let ts = now_ms();
    let hash = entry_hash(&prev, seq, ts, kind.as_str(), subject, detail);
    conn.prepare_cached(
        "INSERT INTO audit (seq, ts_ms, kind, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq, ts, kind.as_str(), subject, detail, prev, hash.as_slice()])?;
    Ok(seq)
}

/// Chains the periods of `outlet` at `level` starting at `starts` whose content changed since
/// their last entry. Returns the number of entries added.
pub(super) fn chain_periods(
    conn: &Connection,
    outlet: &str,
    level: u8,
    starts: impl IntoIterator<Item = i64>,
) -> rusqlite::Result<usize> {
    let mut added = 0;
    for start in starts {
        let Some(content) = period_hash(conn, level, outlet, start)? else { continue };
        let subject = record_subject(level, start, outlet);
        if latest(conn, AuditKind::Record, &subject)?.is_none_or(|(_, d)| d != content) {
            append(conn, AuditKind::Record, &subject, &content)?;
            added += 1;
        }
    }
    Ok(added)
}

/// Chains every stored period not chained yet with its current content (once, when a buffer
/// from before the audit log is opened).
pub(super) fn chain_existing(conn: &Connection) -> rusqlite::Result<usize> {
    let periods: Vec<(u8, String, i64)> = conn
        .prepare("SELECT DISTINCT level, outlet, start FROM record ORDER BY start, level, outlet")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut added = 0;
    for (level, outlet, start) in periods {
        added += chain_periods(conn, &outlet, level, [start])?;
    }
    Ok(added)
}

/// The analyzer state in an `analyzer` entry's detail (`OLD->NEW at_ms=…`).
pub(super) fn parse_state(detail: &str) -> Option<char> {
    detail.split_once("->")?.1.chars().next()
}

impl Store {
    /// Appends one entry in its own transaction.
    pub fn audit(&mut self, kind: AuditKind, subject: &str, detail: &str) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite { path: path.clone(), reason: source };
        let tx =
            self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
        let seq = append(&tx, kind, subject, detail).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(seq)
    }

    /// The newest entry's seq and hash (hex), without checking anything.
    pub fn chain_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, hex(&r.get::<_, Vec<u8>>(1)?)))
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Recomputes the chain and compares every record period with its last chained content.
    ///
    /// With a range (Unix ms), only entries written in it are checked (the first one's
    /// `prev_hash` is taken as given) and only periods starting in it. The first broken link
    /// is the first entry that does not follow from its predecessor; without one, the record
    /// period at fault with the lowest seq (a period never chained comes last).
    pub fn verify_chain(&self, from_ms: Option<i64>, to_ms: Option<i64>) -> Result<ChainStatus, StoreError> {
        let (from, to) = (from_ms.unwrap_or(i64::MIN), to_ms.unwrap_or(i64::MAX));
        let sql = |e| self.err(e);
        let mut status = ChainStatus {
            entries: 0,
            head_seq: None,
            head_hash: None,
            record_periods: 0,
            verified: false,
            first_broken: None,
        };
        let mut retentions: Vec<(i64, i64)> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT seq, ts_ms, kind, subject, detail, prev_hash, hash FROM audit ORDER BY seq")
                .map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            let mut prev: Option<(i64, Vec<u8>)> = None;
            while let Some(row) = rows.next().map_err(sql)? {
                let seq: i64 = row.get(0).map_err(sql)?;
                let ts: i64 = row.get(1).map_err(sql)?;
                let kind: String = row.get(2).map_err(sql)?;
                let subject: String = row.get(3).map_err(sql)?;
                let detail: String = row.get(4).map_err(sql)?;
                let prev_hash: Vec<u8> = row.get(5).map_err(sql)?;
                let hash: Vec<u8> = row.get(6).map_err(sql)?;
                status.head_seq = Some(seq);
                status.head_hash = Some(hex(&hash));
                if kind == AuditKind::Retention.as_str()
                    && let Some(cutoff) = detail.strip_prefix("start<").and_then(|d| d.split(' ').next())
                    && let Ok(cutoff) = cutoff.parse()
                {
                    retentions.push((seq, cutoff));
                }
                if !(from..to).contains(&ts) || status.first_broken.is_some() {
                    prev = None;
                    continue;
                }
                status.entries += 1;
                let (want_seq, want_prev) = match &prev {
                    Some((s, h)) => (Some(s + 1), Some(h.as_slice())),
                    // The first entry of the file, or the first of the range (taken as given).
                    None if from_ms.is_none() => (Some(1), Some(GENESIS.as_slice())),
                    None => (None, None),
                };
                let broken = |reason: String| BrokenLink {
                    seq: Some(seq),
                    subject: format!("{kind} {subject}"),
                    reason,
                };
                if want_seq.is_some_and(|w| w != seq) || want_prev.is_some_and(|p| p != prev_hash) {
                    status.first_broken = Some(broken(format!(
                        "does not follow entry {}: an entry before it was altered, removed or inserted",
                        seq - 1
                    )));
                } else if entry_hash(&prev_hash, seq, ts, &kind, &subject, &detail).as_slice() != hash {
                    status.first_broken = Some(broken("its content does not match its hash: altered".into()));
                }
                prev = Some((seq, hash));
            }
        }
        // Record rows against their last chained content, in one ordered walk of the table.
        let mut record_faults: Vec<BrokenLink> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT level, outlet, start, {RECORD_COLUMNS} FROM record \
                     WHERE start >= ?1 AND start < ?2 ORDER BY level, outlet, start, factor"
                ))
                .map_err(sql)?;
            let mut rows = stmt.query(params![from, to]).map_err(sql)?;
            let mut current: Option<((u8, String, i64), Sha256)> = None;
            let finish = |period: (u8, String, i64), h: Sha256, faults: &mut Vec<BrokenLink>| {
                let subject = record_subject(period.0, period.2, &period.1);
                let content = hex(&h.finalize());
                match latest(&self.conn, AuditKind::Record, &subject) {
                    Ok(Some((_, d))) if d == content => {}
                    Ok(Some((seq, _))) => faults.push(BrokenLink {
                        seq: Some(seq),
                        subject: format!("record {subject}"),
                        reason: "the record rows differ from their last chained content: edited outside the gateway".into(),
                    }),
                    Ok(None) => faults.push(BrokenLink {
                        seq: None,
                        subject: format!("record {subject}"),
                        reason: "record rows that were never chained: inserted outside the gateway".into(),
                    }),
                    Err(e) => return Err(e),
                }
                Ok(())
            };
            while let Some(row) = rows.next().map_err(sql)? {
                let key: (u8, String, i64) =
                    (row.get(0).map_err(sql)?, row.get(1).map_err(sql)?, row.get(2).map_err(sql)?);
                if current.as_ref().is_none_or(|(k, _)| *k != key) {
                    if let Some((k, h)) = current.take() {
                        finish(k, h, &mut record_faults).map_err(sql)?;
                        status.record_periods += 1;
                    }
                    current = Some((key, Sha256::new()));
                }
                let (_, h) = current.as_mut().expect("set above");
                hash_row(h, row, 3).map_err(sql)?;
            }
            if let Some((k, h)) = current.take() {
                finish(k, h, &mut record_faults).map_err(sql)?;
                status.record_periods += 1;
            }
        }
        // Chained periods whose rows are gone: only a later retention entry explains that.
        {
            let mut stmt = self
                .conn
                .prepare("SELECT subject, max(seq) FROM audit WHERE kind = 'record' GROUP BY subject")
                .map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            let mut exists = self
                .conn
                .prepare("SELECT 1 FROM record WHERE level = ?1 AND outlet = ?2 AND start = ?3 LIMIT 1")
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let subject: String = row.get(0).map_err(sql)?;
                let seq: i64 = row.get(1).map_err(sql)?;
                let Some((level, start, outlet)) = parse_record_subject(&subject) else { continue };
                if !(from..to).contains(&start) {
                    continue;
                }
                if exists.exists(params![level, outlet, start]).map_err(sql)? {
                    continue;
                }
                if !retentions.iter().any(|&(s, cutoff)| s > seq && start < cutoff) {
                    record_faults.push(BrokenLink {
                        seq: Some(seq),
                        subject: format!("record {subject}"),
                        reason: "the chained record rows are gone and no retention explains it: deleted outside the gateway".into(),
                    });
                }
            }
        }
        // Parameter and mark rows against their entries.
        record_faults.extend(super::params::verify(&self.conn, from, to).map_err(sql)?);
        record_faults.extend(super::marks::verify(&self.conn, from, to).map_err(sql)?);
        if status.first_broken.is_none() {
            record_faults.sort_by_key(|b| b.seq.unwrap_or(i64::MAX));
            status.first_broken = record_faults.into_iter().next();
        }
        status.verified = status.first_broken.is_none();
        Ok(status)
    }
}
