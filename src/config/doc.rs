//! The configuration file as a spanned document: every key keeps its position, so that each
//! problem is reported at its key's own line and column and named by the item it belongs to
//! (`bus "rs485-1"`, `device "gas" point a21026`), not by its position in a list.
//!
//! Pure: the text in, raw values and problems out. [`Report`] collects the problems; [`Fields`]
//! reads one table's keys (a wrong type or an unknown key is a problem, and reading goes on);
//! [`At`] names an item and finds the position of any of its keys.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// An item of the file (a section, a `[[bus]]`, a point) as problems name and place it.
#[derive(Debug, Clone)]
pub struct At<'a, 't> {
    /// `site`, `bus "rs485-1"`, `device "gas" point a21026`.
    pub item: String,
    /// Offset of the item's header (`[[bus]]`), where a problem without a key of its own goes.
    pub header: Option<usize>,
    table: Option<&'a DeTable<'t>>,
}

impl<'a, 't> At<'a, 't> {
    pub fn new(item: String, header: Option<usize>, table: Option<&'a DeTable<'t>>) -> At<'a, 't> {
        At { item, header, table }
    }

    /// Whether the item's table has `key` (whatever its value).
    pub fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.get(key).is_some())
    }

    /// Where `key` is written: a plain key (`baud`), a key of a nested table (`ascii.pattern`,
    /// `limits.a21026`) or an element of a list (`operating_parameters[1]`). A key that is not
    /// written falls back to the nearest enclosing one, then to the item's header.
    pub fn pos(&self, key: &str) -> Option<usize> {
        let mut found = None;
        let mut table = self.table;
        for part in key.split('.') {
            let Some(t) = table.take() else { break };
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let Some((k, mut v)) = t.get_key_value(name) else { break };
            found = Some(k.span().start);
            if let Some(i) = index {
                match v.get_ref() {
                    DeValue::Array(a) if i < a.len() => {
                        v = &a[i];
                        found = Some(v.span().start);
                    }
                    _ => break,
                }
            }
            if let DeValue::Table(inner) = v.get_ref() {
                table = Some(inner);
            }
        }
        found.or(self.header)
    }
}

/// Collects problems with their positions; [`Report::finish`] gives them in file order.
#[derive(Debug)]
pub struct Report<'t> {
    text: &'t str,
    line_starts: Vec<usize>,
    /// Each problem with its offset (problems about the file as a whole sort first).
    problems: Vec<(usize, ConfigError)>,
    /// What is allowed but probably not meant, the same way.
    warnings: Vec<(usize, ConfigError)>,
}

impl<'t> Report<'t> {
    pub fn new(text: &'t str) -> Report<'t> {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Report { text, line_starts, problems: Vec::new(), warnings: Vec::new() }
    }

    /// A problem with `key` of the item `at`, at the key's position.
    pub fn push(&mut self, at: &At, key: &str, message: impl Into<String>) {
        self.push_at(at.pos(key), &at.item, key, message);
    }

    /// A warning about `key` of the item `at`: the file is usable, but probably not as meant.
    pub fn warn(&mut self, at: &At, key: &str, message: impl Into<String>) {
        let offset = at.pos(key);
        let error = self.error(offset, &at.item, key, message);
        self.warnings.push((offset.map_or(0, |o| o + 1), error));
    }

    /// The warnings in file order (taken out of the report).
    pub fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|(offset, _)| *offset);
        warnings.into_iter().map(|(_, e)| e).collect()
    }

    /// A problem at an explicit position.
    pub fn push_at(&mut self, offset: Option<usize>, item: &str, key: &str, message: impl Into<String>) {
        let error = self.error(offset, item, key, message);
        self.problems.push((offset.map_or(0, |o| o + 1), error));
    }

    fn error(&self, offset: Option<usize>, item: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = match offset {
            Some(o) => {
                let (l, c) = self.line_column(o);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError { item: item.to_string(), key: key.to_string(), line, column, message: message.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// The file's text of a span, shortened to one line, for "got …".
    pub fn source(&self, span: Range<usize>) -> String {
        let text = self.text.get(span).unwrap_or("").lines().next().unwrap_or("").trim();
        let mut short: String = text.chars().take(40).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    }

    /// The 1-based line of an offset.
    pub fn line_of(&self, offset: Option<usize>) -> Option<usize> {
        offset.map(|o| self.line_column(o).0)
    }

    pub fn count(&self) -> usize {
        self.problems.len()
    }

    /// The problems in file order (a stable sort: several at one key keep the order found).
    pub fn finish(mut self) -> Vec<ConfigError> {
        self.problems.sort_by_key(|(offset, _)| *offset);
        self.problems.into_iter().map(|(_, e)| e).collect()
    }

    /// Whether `value` is required and missing: `is required` at the item's header. A key that
    /// is written with a value of the wrong type has had its problem already.
    pub fn need<T>(&mut self, at: &At, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !at.has(key) {
            self.push_at(at.header, &at.item, key, "is required");
        }
        value
    }

    /// An integer in `lo..=hi`.
    pub fn int_in<T: TryFrom<i64>>(
        &mut self,
        at: &At,
        key: &str,
        v: Option<i64>,
        lo: i64,
        hi: i64,
    ) -> Option<T> {
        let v = v?;
        if v < lo || v > hi {
            self.push(at, key, format!("must be between {lo} and {hi}, got {v}"));
            return None;
        }
        T::try_from(v).ok()
    }

    /// A string that `parse` accepts; `allowed` lists the choices for the problem.
    pub fn one_of<T>(
        &mut self,
        at: &At,
        key: &str,
        v: Option<&str>,
        parse: impl Fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        let s = v?;
        let parsed = parse(s);
        if parsed.is_none() {
            self.push(at, key, format!("must be one of {allowed}, got \"{s}\""));
        }
        parsed
    }

    /// A key that must not be set here.
    pub fn forbid<T>(&mut self, at: &At, key: &str, v: &Option<T>, why: &str) {
        if v.is_some() {
            self.push(at, key, format!("is not allowed {why}"));
        }
    }
}

/// A value of a key, converted from TOML, or the span of the part that is wrong.
pub trait FromToml: Sized {
    /// What the value must be, for the problem: `a string`, `an integer`.
    const EXPECTED: &'static str;
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>>;
    /// What each element must be, for a problem with one element of a list or table.
    fn element() -> String {
        Self::EXPECTED.to_string()
    }
}

impl FromToml for String {
    const EXPECTED: &'static str = "a string";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        v.get_ref().as_str().map(str::to_string).ok_or(v.span())
    }
}

impl FromToml for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        v.get_ref().as_integer().and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok()).ok_or(v.span())
    }
}

impl FromToml for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse().map_err(|_| v.span()),
            DeValue::Integer(_) => i64::from_toml(v).map(|i| i as f64),
            _ => Err(v.span()),
        }
    }
}

impl FromToml for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        v.get_ref().as_bool().ok_or(v.span())
    }
}

impl FromToml for Vec<String> {
    const EXPECTED: &'static str = "a list of strings";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        let list = v.get_ref().as_array().ok_or(v.span())?;
        list.iter().map(String::from_toml).collect()
    }
    fn element() -> String {
        "a string (each element of the list)".into()
    }
}

/// An inline table of values (`limits = { a21026 = 35.0 }`), keyed by text.
impl<V: FromToml> FromToml for BTreeMap<String, V> {
    const EXPECTED: &'static str = "a table such as { key = value }";
    fn from_toml(v: &Spanned<DeValue>) -> Result<Self, Range<usize>> {
        let table = v.get_ref().as_table().ok_or(v.span())?;
        table.iter().map(|(k, v)| Ok((k.get_ref().to_string(), V::from_toml(v)?))).collect()
    }
    fn element() -> String {
        format!("{} (each value of the table)", V::EXPECTED)
    }
}

/// Reads the keys of one table of the file, reporting each problem and carrying on.
pub struct Fields<'r, 'a, 't> {
    pub report: &'r mut Report<'t>,
    pub at: &'r At<'a, 't>,
    table: &'a DeTable<'t>,
}

impl<'r, 'a, 't> Fields<'r, 'a, 't> {
    pub fn new(report: &'r mut Report<'t>, at: &'r At<'a, 't>, table: &'a DeTable<'t>) -> Self {
        Fields { report, at, table }
    }

    /// The value of `key`; `None` when absent or of the wrong type (a problem).
    pub fn get<T: FromToml>(&mut self, key: &str) -> Option<T> {
        let v = self.table.get(key)?;
        match T::from_toml(v) {
            Ok(value) => Some(value),
            Err(bad) => {
                let got = self.report.source(bad.clone());
                let what = if bad == v.span() { T::EXPECTED.to_string() } else { T::element() };
                let offset = if bad == v.span() { self.at.pos(key) } else { Some(bad.start) };
                self.report.push_at(offset, &self.at.item, key, format!("must be {what}, got {got}"));
                None
            }
        }
    }

    /// A nested table (`[device.ascii]`) and its header's offset.
    pub fn table(&mut self, key: &str) -> Option<(&'a DeTable<'t>, usize)> {
        let v = self.table.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span().start)),
            _ => {
                let got = self.report.source(v.span());
                self.report.push(self.at, key, format!("must be a table ([…{key}]), got {got}"));
                None
            }
        }
    }

    /// A list of tables (`[[device.point]]`), each with its header's offset.
    pub fn tables(&mut self, key: &str) -> Vec<(&'a DeTable<'t>, usize)> {
        tables(self.report, self.at, self.table, key)
    }

    /// Reports every key that is not one of `known`, with the nearest known key as a hint.
    pub fn unknown_keys(&mut self, known: &[&str]) {
        for (k, _) in self.table.iter() {
            let name = k.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let message = match nearest(name, known) {
                Some(hint) => format!("unknown key; did you mean {hint}?"),
                None => format!("unknown key; expected one of {}", known.join(", ")),
            };
            self.report.push_at(Some(k.span().start), &self.at.item, name, message);
        }
    }
}

/// The tables of `key` in `table`: a list of tables (`[[bus]]`), each with its header's offset.
pub fn tables<'a, 't>(
    report: &mut Report<'t>,
    at: &At,
    table: &'a DeTable<'t>,
    key: &str,
) -> Vec<(&'a DeTable<'t>, usize)> {
    let Some(v) = table.get(key) else { return Vec::new() };
    let list = match v.get_ref() {
        DeValue::Array(list) => list,
        _ => {
            report.push(at, key, format!("must be a list of tables: write the header as [[{key}]]"));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list.iter() {
        match item.get_ref() {
            DeValue::Table(t) => out.push((t, item.span().start)),
            _ => {
                let got = report.source(item.span());
                report.push_at(Some(item.span().start), &at.item, key, format!("must be a table, got {got}"));
            }
        }
    }
    out
}

/// The known key closest to a misspelt one (at most two edits, or one containing the other).
fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2 || (name.len() > 3 && (k.contains(name) || name.contains(k))))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance with adjacent transpositions counting as one edit (`buad` → `baud`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev2: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_keys_find_their_nearest() {
        let known = ["baud", "parity", "word_order", "path", "address"];
        assert_eq!(nearest("buad", &known), Some("baud"));
        assert_eq!(nearest("word_ordr", &known), Some("word_order"));
        assert_eq!(nearest("paritty", &known), Some("parity"));
        assert_eq!(nearest("colour", &known), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn positions_are_lines_and_columns_of_keys() {
        let text = "[site]\nmn = \"x\"\n[[bus]]\n  baud = 1\n  limits = { a = 1 }\n  list = [\"a\", 2]\n";
        let doc = DeTable::parse(text).unwrap();
        let mut r = Report::new(text);
        let bus = &tables(&mut r, &At::new(String::new(), None, None), doc.get_ref(), "bus")[0];
        let at = At::new("bus \"b\"".into(), Some(bus.1), Some(bus.0));
        r.push(&at, "baud", "wrong");
        r.push(&at, "limits.a", "wrong");
        r.push(&at, "missing", "absent");
        let list: Option<Vec<String>> = Fields::new(&mut r, &at, bus.0).get("list");
        assert!(list.is_none());
        let got: Vec<String> = r.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "line 3, column 1: bus \"b\": missing: absent",
                "line 4, column 3: bus \"b\": baud: wrong",
                "line 5, column 14: bus \"b\": limits.a: wrong",
                "line 6, column 16: bus \"b\": list: must be a string (each element of the list), got 2",
            ]
        );
    }
}
