//! Operator marks in the store: the `mark` table holds each mark's current content; every add,
//! edit and end appends a `mark` audit entry with the whole content, in the same transaction,
//! and the row keeps the seq of its newest entry. Marks are never deleted (a trigger refuses
//! it). `verify` checks each row against its newest entry. The rules a mark must keep are
//! [`crate::compute::marks::check`]'s, applied inside the write transaction, so that two
//! operators marking at once cannot make overlapping marks.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::audit::{self, AuditKind, BrokenLink};
use super::{Store, StoreError};
use crate::compute::marks::{Kind, Mark, MarkError, Rules, check};

/// Why a mark could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum MarkStoreError {
    /// The mark breaks a rule; nothing was changed.
    #[error(transparent)]
    Refused(#[from] MarkError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an edit changes (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    pub start_ms: Option<i64>,
    /// `Some(None)` reopens an ended mark.
    pub end_ms: Option<Option<i64>>,
    pub reason: Option<String>,
}

/// What a mark covered, `(start_ms, end_ms)` (`None`: open).
pub type Span = (i64, Option<i64>);

/// The audit entry's subject of a mark.
pub fn subject(outlet: &str, id: i64) -> String {
    format!("{outlet}/{id}")
}

/// A mark's content as its audit entries carry it (what `verify` recomputes from the row).
pub fn content(m: &Mark) -> String {
    let end = m.end_ms.map_or_else(|| "-".to_string(), |e| e.to_string());
    format!("kind={} start_ms={} end_ms={end} who={} reason={}", m.kind, m.start_ms, m.who, m.reason)
}

const COLUMNS: &str = "id, outlet, kind, start, end, reason, who";

fn row_mark(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mark> {
    let kind: String = r.get(2)?;
    Ok(Mark {
        id: r.get(0)?,
        outlet: r.get(1)?,
        // A kind written outside the gateway is caught by `verify`; read as the mildest.
        kind: Kind::parse(&kind).unwrap_or(Kind::Maintenance),
        start_ms: r.get(3)?,
        end_ms: r.get(4)?,
        reason: r.get(5)?,
        who: r.get(6)?,
    })
}

fn outlet_marks(conn: &Connection, outlet: &str) -> rusqlite::Result<Vec<Mark>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM mark WHERE outlet = ?1 ORDER BY start, id"))?;
    let rows = stmt.query_map([outlet], row_mark)?;
    rows.collect()
}

fn one(conn: &Connection, id: i64) -> rusqlite::Result<Option<Mark>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM mark WHERE id = ?1"))?
        .query_row([id], row_mark)
        .optional()
}

impl Store {
    fn mark_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|reason| StoreError::Sqlite { path, reason })
    }

    /// Adds a mark (its `id` is assigned); refused when it breaks a rule. `via` says where it
    /// came from (`cli`, `api 10.0.0.5`), for the audit log.
    pub fn add_mark(&mut self, mut m: Mark, rules: Rules<'_>, via: &str) -> Result<Mark, MarkStoreError> {
        let path = self.path.clone();
        let sql = |reason| StoreError::Sqlite { path: path.clone(), reason };
        let tx = self.mark_tx()?;
        let others = outlet_marks(&tx, &m.outlet).map_err(sql)?;
        check(&m, None, &others, rules)?;
        tx.execute(
            "INSERT INTO mark (outlet, kind, start, end, reason, who, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
            params![m.outlet, m.kind.name(), m.start_ms, m.end_ms, m.reason, m.who],
        )
        .map_err(sql)?;
        m.id = tx.last_insert_rowid();
        let by = m.who.clone();
        write_entry(&tx, &m, "add", &by, via).map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(id = m.id, outlet = %m.outlet, kind = %m.kind, who = %m.who, "Mark added.");
        Ok(m)
    }

    /// Ends an open mark at `end_ms`.
    pub fn end_mark(
        &mut self,
        id: i64,
        end_ms: i64,
        by: &str,
        via: &str,
        rules: Rules<'_>,
    ) -> Result<Mark, MarkStoreError> {
        self.change_mark(id, (by, via), rules, "end", |m| {
            if m.end_ms.is_some() {
                return Err(MarkError::AlreadyEnded(m.id));
            }
            m.end_ms = Some(end_ms);
            Ok(())
        })
    }

    /// Changes a mark's start, end or reason.
    pub fn edit_mark(
        &mut self,
        id: i64,
        edit: Edit,
        by: &str,
        via: &str,
        rules: Rules<'_>,
    ) -> Result<Mark, MarkStoreError> {
        self.change_mark(id, (by, via), rules, "edit", |m| {
            if let Some(s) = edit.start_ms {
                m.start_ms = s;
            }
            if let Some(e) = edit.end_ms {
                m.end_ms = e;
            }
            if let Some(r) = &edit.reason {
                m.reason = r.clone();
            }
            Ok(())
        })
    }

    fn change_mark(
        &mut self,
        id: i64,
        (by, via): (&str, &str),
        rules: Rules<'_>,
        action: &str,
        change: impl FnOnce(&mut Mark) -> Result<(), MarkError>,
    ) -> Result<Mark, MarkStoreError> {
        let path = self.path.clone();
        let sql = |reason| StoreError::Sqlite { path: path.clone(), reason };
        let tx = self.mark_tx()?;
        let before = one(&tx, id).map_err(sql)?.ok_or(MarkError::NotFound(id))?;
        let mut m = before.clone();
        change(&mut m)?;
        // Who ends or edits is checked like who added.
        let mut by_check = m.clone();
        by_check.who = by.to_string();
        check(&by_check, Some(&before), &[], rules)?;
        let others: Vec<Mark> =
            outlet_marks(&tx, &m.outlet).map_err(sql)?.into_iter().filter(|o| o.id != id).collect();
        check(&m, Some(&before), &others, rules)?;
        tx.execute(
            "UPDATE mark SET start = ?2, end = ?3, reason = ?4 WHERE id = ?1",
            params![id, m.start_ms, m.end_ms, m.reason],
        )
        .map_err(sql)?;
        write_entry(&tx, &m, action, by, via).map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(id, outlet = %m.outlet, kind = %m.kind, %action, by, "Mark changed.");
        Ok(m)
    }

    /// The marks of `outlet` (all outlets: `None`) that cover any of `[from_ms, to_ms)`, by start.
    pub fn marks(&self, outlet: Option<&str>, from_ms: i64, to_ms: i64) -> Result<Vec<Mark>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM mark WHERE (?1 IS NULL OR outlet = ?1) AND start < ?3 \
                 AND (end IS NULL OR end > ?2) ORDER BY start, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![outlet, from_ms, to_ms], row_mark).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The newest mark entry's seq: it changes whenever a mark is added, edited or ended (the
    /// statistics worker recomputes what changed).
    pub fn marks_version(&self) -> Result<Option<i64>, StoreError> {
        self.conn.query_row("SELECT max(seq) FROM mark", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Marks whose newest entry is after `seq`, with what they covered before (from their
    /// previous entry), so that the periods whose flags changed can be recomputed.
    pub fn marks_changed_since(&self, seq: i64) -> Result<Vec<(Mark, Option<Span>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM mark WHERE seq > ?1 ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let marks: Vec<Mark> = stmt
            .query_map([seq], row_mark)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(marks.len());
        for m in marks {
            // The content it had at `seq`: its newest entry up to then.
            let before: Option<String> = self
                .conn
                .query_row(
                    "SELECT detail FROM audit WHERE kind = 'mark' AND subject = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
                    params![subject(&m.outlet, m.id), seq],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            let span = before.as_deref().and_then(parse_span);
            out.push((m, span));
        }
        Ok(out)
    }
}

/// The `(start_ms, end_ms)` in an entry's content.
fn parse_span(detail: &str) -> Option<Span> {
    let content = detail.split_once('\n')?.1;
    let field = |key: &str| content.split(' ').find_map(|f| f.strip_prefix(key));
    let start = field("start_ms=")?.parse().ok()?;
    let end = match field("end_ms=")? {
        "-" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

/// Appends the entry of an add, edit or end and points the row at it.
fn write_entry(tx: &Connection, m: &Mark, action: &str, by: &str, via: &str) -> rusqlite::Result<()> {
    let via: String = via.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let detail = format!("{action} by {by} via {via}\n{}", content(m));
    let seq = audit::append(tx, AuditKind::Mark, &subject(&m.outlet, m.id), &detail)?;
    tx.execute("UPDATE mark SET seq = ?2 WHERE id = ?1", params![m.id, seq])?;
    Ok(())
}

/// Every mark row against its newest audit entry: a row edited, inserted or deleted outside the
/// gateway shows. Marks starting in `[from, to)` only.
pub(super) fn verify(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<BrokenLink>> {
    let mut faults = Vec::new();
    let mut newest = conn.prepare_cached(
        "SELECT seq, detail FROM audit WHERE kind = 'mark' AND subject = ?1 ORDER BY seq DESC LIMIT 1",
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS}, seq, kind FROM mark WHERE start >= ?1 AND start < ?2 ORDER BY id"
    ))?;
    let mut rows = stmt.query(params![from, to])?;
    let mut seen = std::collections::HashSet::new();
    while let Some(r) = rows.next()? {
        let m = row_mark(r)?;
        let seq: i64 = r.get(7)?;
        let kind_text: String = r.get(8)?;
        let subject = subject(&m.outlet, m.id);
        seen.insert(subject.clone());
        let entry: Option<(i64, String)> =
            newest.query_row([&subject], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let ok = kind_text == m.kind.name()
            && entry.as_ref().is_some_and(|(s, d)| {
                *s == seq && d.split_once('\n').map(|x| x.1) == Some(content(&m).as_str())
            });
        if !ok {
            faults.push(BrokenLink {
                seq: entry.map(|(s, _)| s),
                subject: format!("mark {subject}"),
                reason:
                    "the mark differs from its newest audit entry: edited or inserted outside the gateway"
                        .into(),
            });
        }
    }
    let mut stmt =
        conn.prepare("SELECT subject, max(seq), detail FROM audit WHERE kind = 'mark' GROUP BY subject")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let subject: String = r.get(0)?;
        let seq: i64 = r.get(1)?;
        let detail: String = r.get(2)?;
        let in_range = parse_span(&detail).is_some_and(|(s, _)| (from..to).contains(&s));
        if in_range && !seen.contains(&subject) {
            faults.push(BrokenLink {
                seq: Some(seq),
                subject: format!("mark {subject}"),
                reason: "the mark of this entry is gone: deleted outside the gateway".into(),
            });
        }
    }
    Ok(faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn fmt(ms: i64) -> String {
        ms.to_string()
    }

    #[test]
    fn marks_are_stored_audited_refused_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(&dir.path().join("m.db")).unwrap();
        let now = crate::model::now_ms();
        let rules = Rules { now_ms: now, window_ms: 48 * H, fmt: &fmt };
        let new = |kind, start, end| Mark {
            id: 0,
            outlet: "kiln".into(),
            kind,
            start_ms: start,
            end_ms: end,
            reason: "relining".into(),
            who: "Wang".into(),
        };
        let a = store.add_mark(new(Kind::Stopped, now - 10 * H, None), rules, "cli").unwrap();
        assert!(a.id > 0);
        let version = store.marks_version().unwrap().unwrap();
        // Another kind overlapping the open mark: refused, nothing stored.
        let err = store.add_mark(new(Kind::Fault, now - 2 * H, Some(now - H)), rules, "cli").unwrap_err();
        assert!(matches!(err, MarkStoreError::Refused(MarkError::Overlap { .. })), "{err}");
        assert_eq!(store.marks(None, 0, i64::MAX).unwrap().len(), 1);
        let ended = store.end_mark(a.id, now - 3 * H, "Li", "cli", rules).unwrap();
        assert_eq!(ended.end_ms, Some(now - 3 * H));
        assert!(matches!(
            store.end_mark(a.id, now, "Li", "cli", rules),
            Err(MarkStoreError::Refused(MarkError::AlreadyEnded(_)))
        ));
        assert!(matches!(
            store.end_mark(99, now, "Li", "cli", rules),
            Err(MarkStoreError::Refused(MarkError::NotFound(99)))
        ));
        let changed = store.marks_changed_since(version).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1, Some((now - 10 * H, None)), "what it covered before the end");
        let b = store.add_mark(new(Kind::Fault, now - 2 * H, Some(now - H)), rules, "cli").unwrap();
        let edited = store
            .edit_mark(
                b.id,
                Edit { reason: Some("valve".into()), ..Edit::default() },
                "Li",
                "api 10.0.0.5",
                rules,
            )
            .unwrap();
        assert_eq!(edited.reason, "valve");
        assert_eq!(
            store.marks(Some("kiln"), now - 4 * H, now).unwrap().iter().map(|m| m.id).collect::<Vec<_>>(),
            [a.id, b.id]
        );
        assert!(store.marks(Some("kiln"), now - H, now).unwrap().is_empty(), "[from, to) overlap only");
        let status = store.verify_chain(None, None).unwrap();
        assert!(status.verified, "{:?}", status.first_broken);
        // A mark edited outside the gateway.
        store.conn.execute("UPDATE mark SET reason = 'nothing happened' WHERE id = ?1", [b.id]).unwrap();
        let status = store.verify_chain(None, None).unwrap();
        let broken = status.first_broken.expect("the edit shows");
        assert_eq!(broken.subject, format!("mark kiln/{}", b.id));
    }
}
