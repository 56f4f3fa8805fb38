//! The queue against a real SQLite file: order across kinds, cursors over acknowledged runs,
//! rewinds, HJ 212-2025 live periods, minute blocks and run time.
use std::sync::Arc;

use super::*;
use crate::compute::Record;
use crate::compute::stats::Stat;
use crate::model::{Flag, Sample};

const OFFSET: i64 = 8 * 3600;
const HOUR: i64 = 3_600_000;
/// 2026-11-29 10:00 local in Unix ms.
const T0: i64 = 1_795_917_600_000;

fn record(level: Level, start_ms: i64, avg: f64) -> Record {
    Record {
        level,
        start: start_ms / 1000 + OFFSET,
        factor: "a21026".into(),
        stat: Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(avg),
            avg: Some(avg),
            max: Some(avg),
            zs_min: None,
            zs_avg: None,
            zs_max: None,
            cou: None,
            flag: Flag::N,
            valid: true,
        },
        limit: None,
        exceeded: false,
    }
}

fn spec(kinds: Vec<Kind>, live_first: bool) -> QueueSpec {
    QueueSpec {
        link: "p".into(),
        outlet: "kiln".into(),
        kinds,
        block_minutes: 1,
        offset_s: OFFSET,
        live_first,
        normal_share: 0.75,
        run_status: vec![("kiln".into(), "SB1-RS".into())],
        max_hold_ms: 60_000,
        corrections: true,
    }
}

/// A store with the `n` hours before `T0` and the day before.
fn store(dir: &tempfile::TempDir, n: i64) -> (Store, Vec<i64>) {
    let (mut store, _) = Store::open(&dir.path().join("q.db")).unwrap();
    let hours: Vec<i64> = (1..=n).rev().map(|k| T0 - k * HOUR).collect();
    let mut records: Vec<Record> = hours.iter().map(|s| record(Level::Hour, *s, 1.0)).collect();
    records.push(record(Level::Day, T0 - 34 * HOUR, 1.0));
    store.upsert_records("kiln", &records, OFFSET).unwrap();
    (store, hours)
}

fn starts(items: &[Item]) -> Vec<(Kind, i64)> {
    items.iter().map(|i| (i.kind, i.start_ms)).collect()
}

#[test]
fn periods_come_oldest_end_first_and_the_cursor_moves_over_acknowledged_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, hours) = store(&dir, 4);
    let mut q = LinkQueue::open(&store, spec(vec![Kind::Hour, Kind::Day], false), T0 - 48 * HOUR).unwrap();
    let items = q.next(&store, 10, T0, false).unwrap();
    // The day ends (at local midnight) before the first of the four hours.
    let day = T0 - 34 * HOUR;
    let mut expected = vec![(Kind::Day, day)];
    expected.extend(hours.iter().map(|h| (Kind::Hour, *h)));
    assert_eq!(starts(&items), expected);
    assert!(q.next(&store, 10, T0, false).unwrap().is_empty(), "all handed out");
    // The second hour acknowledged first: the cursor waits for the first.
    q.ack(Kind::Hour, hours[1]);
    q.flush(&mut store).unwrap();
    assert_eq!(store.cursor("p", Kind::Hour).unwrap(), None);
    q.ack(Kind::Hour, hours[0]);
    q.flush(&mut store).unwrap();
    assert_eq!(store.cursor("p", Kind::Hour).unwrap(), Some(hours[1]));
    let summary = q.summary(&store, T0).unwrap();
    assert_eq!(summary.backlog(Kind::Hour), 2);
    assert_eq!(summary.get(Kind::Hour).unwrap().oldest_unsent, Some(hours[2]));
    assert_eq!(summary.oldest_unsent(), Some(day), "the day is not acknowledged");
}

#[test]
fn what_was_handed_out_and_not_acknowledged_comes_again_after_a_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, hours) = store(&dir, 3);
    let mut q = LinkQueue::open(&store, spec(vec![Kind::Hour], false), T0 - 48 * HOUR).unwrap();
    assert_eq!(q.next(&store, 2, T0, false).unwrap().len(), 2);
    q.ack(Kind::Hour, hours[1]);
    q.rewind();
    // The first again; the second is known acknowledged and passed over; then the third.
    let again = q.next(&store, 3, T0, false).unwrap();
    assert_eq!(starts(&again), [(Kind::Hour, hours[0]), (Kind::Hour, hours[2])]);
    q.ack(Kind::Hour, hours[0]);
    q.ack(Kind::Hour, hours[2]);
    assert_eq!(q.cursor(Kind::Hour), hours[2]);
}

#[test]
fn with_live_first_the_newest_hour_goes_ahead_of_the_backlog_and_the_cursor_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, hours) = store(&dir, 5);
    let mut q = LinkQueue::open(&store, spec(vec![Kind::Hour], true), T0 - 48 * HOUR).unwrap();
    let now = T0 + 60_000;
    assert_eq!(q.live_start(Kind::Hour, now), T0 - HOUR);
    let items = q.next(&store, 10, now, false).unwrap();
    let newest = *hours.last().unwrap();
    assert_eq!(items[0].start_ms, newest);
    assert!(items[0].live && !items[0].backlog);
    assert_eq!(starts(&items[1..]), hours[..4].iter().map(|h| (Kind::Hour, *h)).collect::<Vec<_>>());
    assert!(items[1..].iter().all(|i| i.backlog && !i.live), "the older hours are backlog (RF=1)");
    q.ack(Kind::Hour, newest);
    assert_eq!(q.cursor(Kind::Hour), q.default_cursor(Kind::Hour), "acknowledged ahead of its backlog");
    for h in &hours[..4] {
        q.ack(Kind::Hour, *h);
    }
    assert_eq!(q.cursor(Kind::Hour), newest);
    assert!(q.next(&store, 10, now, false).unwrap().is_empty(), "none twice");
}

#[test]
fn live_periods_are_the_last_complete_ones_in_local_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(&dir, 1);
    let mut s = spec(vec![Kind::Minute, Kind::Hour, Kind::Day], true);
    s.block_minutes = 10;
    let q = LinkQueue::open(&store, s, T0).unwrap();
    // 10:31:30 local.
    let now = T0 + (31 * 60 + 30) * 1000;
    assert_eq!(q.live_start(Kind::Hour, now), T0 - HOUR);
    // 10:31:30 − 70 s = 10:30:20 → current block 10:30, live block 10:20.
    assert_eq!(q.live_start(Kind::Minute, now), T0 + 20 * 60_000);
    // Local midnight of the day before.
    assert_eq!(q.live_start(Kind::Day, now), T0 - 34 * HOUR);
}

#[test]
fn minute_blocks_are_aggregated_and_wait_until_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(&dir.path().join("q.db")).unwrap();
    let minutes: Vec<Record> =
        (0..10).map(|i| record(Level::Minute, T0 - 2 * HOUR + i * 60_000, 1.0 + i as f64)).collect();
    store.upsert_records("kiln", &minutes, OFFSET).unwrap();
    let mut s = spec(vec![Kind::Minute], false);
    s.block_minutes = 5;
    let mut q = LinkQueue::open(&store, s, T0 - 48 * HOUR).unwrap();
    // Just after the second block ends it is not settled yet.
    let early = q.next(&store, 10, T0 - 2 * HOUR + 10 * 60_000 + 1000, false).unwrap();
    assert_eq!(early.len(), 1);
    let items = q.next(&store, 10, T0, false).unwrap();
    assert_eq!(items.len(), 1);
    let avg = |i: &Item| match &i.payload {
        Payload::Records(r) => r[0].stat.avg,
        Payload::RunTime(_) => None,
    };
    assert_eq!((avg(&early[0]), avg(&items[0])), (Some(3.0), Some(8.0)));
    assert_eq!(items[0].start_ms, T0 - 2 * HOUR + 5 * 60_000);
}

#[test]
fn a_day_of_run_time_comes_from_the_run_status_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(&dir.path().join("q.db")).unwrap();
    let day = T0 - 34 * HOUR;
    // Running from 00:00 to 06:00, then stopped, a sample a minute.
    let samples: Vec<Sample> = (0..24 * 60)
        .map(|m| Sample {
            ts_ms: day + m * 60_000,
            device: Arc::from("kiln"),
            factor: Arc::from("SB1-RS"),
            value: Some(if m < 6 * 60 { 1.0 } else { 0.0 }),
            flag: Flag::N,
        })
        .collect();
    store.insert(&samples).unwrap();
    // Two days earlier, one sample of a facility that ran, and nothing on the day between.
    let early = day - 48 * HOUR;
    let one = Sample {
        ts_ms: early + HOUR,
        device: Arc::from("kiln"),
        factor: Arc::from("SB1-RS"),
        value: Some(1.0),
        flag: Flag::N,
    };
    store.insert(&[one]).unwrap();
    let mut q = LinkQueue::open(&store, spec(vec![Kind::RunTime], false), early - 24 * HOUR).unwrap();
    let items = q.next(&store, 5, T0, false).unwrap();
    assert_eq!(
        starts(&items),
        [(Kind::RunTime, early), (Kind::RunTime, day)],
        "the empty day is passed over"
    );
    // The lone sample stands for its hold (60 s) only.
    assert_eq!(items[0].payload, Payload::RunTime(vec![("SB1-RS".into(), 0.02)]));
    assert_eq!(items[1].payload, Payload::RunTime(vec![("SB1-RS".into(), 6.0)]));
    assert_eq!(q.history(&store, Kind::RunTime, day, day).unwrap(), [day]);
    assert_eq!(q.history(&store, Kind::RunTime, early, day).unwrap(), [early, day]);
    assert!(q.history(&store, Kind::RunTime, T0 - 200 * HOUR, T0 - 100 * HOUR).unwrap().is_empty());
    assert_eq!(q.summary(&store, T0).unwrap().backlog(Kind::RunTime), 2);
}

/// A period recomputed after the platform had it (an operator's mark) goes out again, first and
/// as backlog; once acknowledged the link is done with it, also after a restart. A period not
/// sent yet is no correction; a new link, or one that takes no corrections, sends none.
#[test]
fn recomputed_periods_the_platform_has_go_out_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, hours) = store(&dir, 4);
    let mut q = LinkQueue::open(&store, spec(vec![Kind::Hour], false), T0 - 48 * HOUR).unwrap();
    // Nothing recorded yet: the link starts after what exists.
    store.add_corrections("kiln", &[(Level::Hour, hours[0])], None).unwrap();
    let first = q.next(&store, 2, T0, false).unwrap();
    assert_eq!(starts(&first), [(Kind::Hour, hours[0]), (Kind::Hour, hours[1])], "in order, no correction");
    for item in &first {
        q.ack(item.kind, item.start_ms);
    }
    // Hours 0 and 1 acknowledged; 0, 1 and 3 recomputed (3 not sent yet), and 1 twice.
    store
        .add_corrections(
            "kiln",
            &[
                (Level::Hour, hours[1]),
                (Level::Hour, hours[0]),
                (Level::Hour, hours[1]),
                (Level::Hour, hours[3]),
            ],
            None,
        )
        .unwrap();
    store.add_corrections("elsewhere", &[(Level::Hour, hours[0])], None).unwrap();
    let items = q.next(&store, 10, T0, false).unwrap();
    assert_eq!(
        starts(&items),
        [(Kind::Hour, hours[1]), (Kind::Hour, hours[0]), (Kind::Hour, hours[2]), (Kind::Hour, hours[3])]
    );
    assert!(items[0].backlog && items[1].backlog && !items[0].live, "corrections are backlog (RF=1)");
    // A new connection: the corrections not acknowledged go again.
    q.ack(Kind::Hour, hours[1]);
    q.rewind();
    let again = q.next(&store, 1, T0, false).unwrap();
    assert_eq!(starts(&again), [(Kind::Hour, hours[0])]);
    q.ack(Kind::Hour, hours[0]);
    q.flush(&mut store).unwrap();
    // Another process: nothing to send again.
    let mut q = LinkQueue::open(&store, spec(vec![Kind::Hour], false), T0 - 48 * HOUR).unwrap();
    let next = q.next(&store, 10, T0, false).unwrap();
    assert!(next.iter().all(|i| i.start_ms > hours[1]), "{:?}", starts(&next));
    // A new link does not get the corrections made before it.
    let mut fresh = LinkQueue::open(
        &store,
        QueueSpec { link: "new".into(), ..spec(vec![Kind::Hour], false) },
        T0 - 48 * HOUR,
    )
    .unwrap();
    assert_eq!(fresh.next(&store, 1, T0, false).unwrap()[0].start_ms, hours[0], "in order, from its start");
    // A link that takes no corrections passes them over.
    let mut off = LinkQueue::open(
        &store,
        QueueSpec { link: "off".into(), corrections: false, ..spec(vec![Kind::Hour], false) },
        T0 - 48 * HOUR,
    )
    .unwrap();
    let all = off.next(&store, 10, T0, false).unwrap();
    for item in &all {
        off.ack(item.kind, item.start_ms);
    }
    store.add_corrections("kiln", &[(Level::Hour, hours[0])], None).unwrap();
    assert!(off.next(&store, 10, T0, false).unwrap().is_empty());
}
