//! Plain domain types shared by every stage: data flags (HJ 212 table 8) and samples.

use std::fmt;
use std::sync::Arc;

/// Data flag of HJ 212-2017 table 8.
///
/// `T` means "above the instrument's measurement range", not "above the emission limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Instrument operating normally.
    N,
    /// Instrument (or the facility it measures) stopped.
    F,
    /// Data produced during maintenance.
    M,
    /// Manually entered set value.
    S,
    /// Instrument fault.
    D,
    /// Instrument in calibration.
    C,
    /// Sampled value above the instrument's measurement upper limit.
    T,
    /// Communication fault between instrument and data logger.
    B,
}

impl Flag {
    /// All flags, in table 8 order.
    pub const ALL: [Flag; 8] = [Flag::N, Flag::F, Flag::M, Flag::S, Flag::D, Flag::C, Flag::T, Flag::B];

    /// The single letter used on the wire and in the store.
    pub fn as_char(self) -> char {
        match self {
            Flag::N => 'N',
            Flag::F => 'F',
            Flag::M => 'M',
            Flag::S => 'S',
            Flag::D => 'D',
            Flag::C => 'C',
            Flag::T => 'T',
            Flag::B => 'B',
        }
    }

    /// Parses a flag letter (upper case only, as the standard writes them).
    pub fn from_char(c: char) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.as_char() == c)
    }

    /// Severity when several conditions apply to one device at once: the highest wins.
    ///
    /// A communication fault hides everything (no value was read); a stopped facility outranks
    /// a fault, a fault outranks a calibration, a calibration outranks maintenance.
    pub fn severity(self) -> u8 {
        match self {
            Flag::N => 0,
            Flag::T => 1,
            Flag::S => 2,
            Flag::M => 3,
            Flag::C => 4,
            Flag::D => 5,
            Flag::F => 6,
            Flag::B => 7,
        }
    }

    /// The stored code: index into [`Flag::ALL`].
    pub fn code(self) -> u8 {
        Flag::ALL.iter().position(|f| *f == self).unwrap_or(0) as u8
    }

    /// Inverse of [`Flag::code`].
    pub fn from_code(code: u8) -> Option<Flag> {
        Flag::ALL.get(code as usize).copied()
    }
}

/// A set of flags, e.g. the flags whose samples count as valid (`[statistics] valid_flags`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlagSet(u8);

impl FlagSet {
    /// N and T: a value above the instrument's range is still a measurement, its lower bound.
    pub const NORMAL_AND_OVER_RANGE: FlagSet = FlagSet::of(&[Flag::N, Flag::T]);

    pub const fn of(flags: &[Flag]) -> FlagSet {
        let mut bits = 0u8;
        let mut i = 0;
        while i < flags.len() {
            bits |= 1 << flags[i] as u8;
            i += 1;
        }
        FlagSet(bits)
    }

    pub fn contains(self, flag: Flag) -> bool {
        self.0 & (1 << flag as u8) != 0
    }

    /// The flags of the set, in table 8 order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// `N,T`.
impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters: Vec<String> = self.iter().map(|f| f.to_string()).collect();
        f.write_str(&letters.join(","))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// One real-time reading of one factor of one device.
///
/// `value` is `None` exactly when nothing trustworthy was read (flag B, or a non-finite number
/// from the analyzer): a missing value is never replaced by the last good one.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix time in milliseconds (UTC) at which the poll started.
    pub ts_ms: i64,
    pub device: Arc<str>,
    /// HJ 212 factor code, e.g. `a21026`.
    pub factor: Arc<str>,
    pub value: Option<f64>,
    pub flag: Flag,
}

/// Wall-clock now as Unix milliseconds (see [`crate::clock::now`]).
pub fn now_ms() -> i64 {
    crate::clock::now().0
}
