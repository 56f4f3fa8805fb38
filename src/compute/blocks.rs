//! Minute records combined into the blocks of the minute-data interval (HJ 212 `MinInterval`,
//! table 4: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes): what a 2051 upload carries when the
//! interval is longer than one minute. Pure.
//!
//! A block of `m` minutes is one period whose members are its minute records: Min, Avg and Max
//! over the valid minutes, the converted average over those that have one, the totals summed,
//! and the period flag of [`crate::compute::stats`] with three quarters of the block's minutes
//! required valid (the notes to C.16: 75 % normal values).

use std::collections::BTreeMap;

use super::stats::{Acc, Level, Member, Record};

/// The records of one block of `minutes` minutes starting at `start_local` (local seconds), one
/// per factor, from that block's minute records (any order; records of other levels or outside
/// the block are ignored). `normal_share` is the share of `N` members an `N` block needs.
pub fn minute_block(records: &[Record], start_local: i64, minutes: u32, normal_share: f64) -> Vec<Record> {
    let end = start_local + i64::from(minutes) * 60;
    let mut by_factor: BTreeMap<&str, Acc> = BTreeMap::new();
    for r in records.iter().filter(|r| r.level == Level::Minute && (start_local..end).contains(&r.start)) {
        by_factor.entry(&r.factor).or_default().push(Member::period(&r.stat));
    }
    let need = (minutes * 3).div_ceil(4);
    by_factor
        .into_iter()
        .map(|(factor, acc)| Record {
            level: Level::Minute,
            start: start_local,
            factor: factor.to_string(),
            stat: acc.finish(need, normal_share),
            limit: None,
            exceeded: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::stats::Stat;
    use crate::model::Flag;

    fn minute(start: i64, factor: &str, avg: Option<f64>, flag: Flag) -> Record {
        Record {
            level: Level::Minute,
            start,
            factor: factor.into(),
            stat: Stat {
                n_total: 30,
                n_valid: 30,
                min: avg,
                avg,
                max: avg,
                zs_min: avg.map(|v| v * 2.0),
                zs_avg: avg.map(|v| v * 2.0),
                zs_max: avg.map(|v| v * 2.0),
                cou: Some(0.5),
                flag,
                valid: flag == Flag::N,
            },
            limit: None,
            exceeded: false,
        }
    }

    #[test]
    fn a_five_minute_block_averages_its_minutes_per_factor() {
        let base = 36_000;
        let mut records: Vec<Record> =
            (0..5).map(|i| minute(base + i * 60, "a21026", Some(1.0 + i as f64), Flag::N)).collect();
        records.push(minute(base, "a19001", Some(9.0), Flag::N));
        // The next block's minute is not part of this one.
        records.push(minute(base + 300, "a21026", Some(100.0), Flag::N));
        let block = minute_block(&records, base, 5, 0.75);
        assert_eq!(block.len(), 2);
        let so2 = block.iter().find(|r| r.factor == "a21026").unwrap();
        assert_eq!(
            (so2.start, so2.stat.avg, so2.stat.min, so2.stat.max),
            (base, Some(3.0), Some(1.0), Some(5.0))
        );
        assert_eq!((so2.stat.zs_avg, so2.stat.cou, so2.stat.flag), (Some(6.0), Some(2.5), Flag::N));
        // One valid minute of five is below the three quarters a block needs.
        let o2 = block.iter().find(|r| r.factor == "a19001").unwrap();
        assert_eq!(o2.stat.flag, Flag::B);
    }

    #[test]
    fn a_block_with_too_many_abnormal_minutes_takes_their_flag() {
        let base = 0;
        let mut records: Vec<Record> =
            (0..7).map(|i| minute(base + i * 60, "a21026", Some(5.0), Flag::N)).collect();
        records.extend((7..10).map(|i| minute(base + i * 60, "a21026", Some(50.0), Flag::C)));
        let block = minute_block(&records, base, 10, 0.75);
        assert_eq!(block[0].stat.flag, Flag::C, "7 of 10 normal is below 75 %");
        assert_eq!(block[0].stat.avg, Some(5.0), "calibration minutes are not averaged");
    }
}
