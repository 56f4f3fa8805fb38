//! The pure modules at the edges of their input types (issue 12): whatever the numbers, no
//! panic (integer overflow included: tests run with overflow checks) and the documented outcome.
//! Times anywhere in `i64` into the evaluator, status registers with any bit number, read plans
//! over any register map.

use std::collections::BTreeMap;
use std::sync::Arc;

use cems_gateway::acquire::flags::status_flag;
use cems_gateway::acquire::registers::{
    DataType, MAX_REGS_PER_READ, RegisterRef, Table, WordOrder, plan_reads,
};
use cems_gateway::compute::evaluate::{Evaluator, Input, TIME_RANGE};
use cems_gateway::compute::{OutletLimits, OutletSpec, limits};
use cems_gateway::config::StatusRule;
use cems_gateway::model::Flag;
use proptest::prelude::*;

fn spec() -> OutletSpec {
    OutletSpec::new(OutletLimits::resolve(limits::profile("cement-kiln"), None, &Default::default()))
}

proptest! {
    /// Times from anywhere in `i64` (a sender's clock, a corrupt store): those outside the
    /// calendar are dropped and counted, the others evaluated; never an overflow.
    #[test]
    fn the_evaluator_takes_any_time(times in proptest::collection::vec(any::<i64>(), 1..40), value in any::<f64>()) {
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let mut e = Evaluator::new(spec());
        for t in &sorted {
            e.push(Input { t: *t, factor: Arc::from("a21026"), value: Some(value), flag: Flag::N });
        }
        let outside = sorted.iter().filter(|t| !TIME_RANGE.contains(*t)).count() as u64;
        prop_assert!(e.late >= outside);
        let out = e.finish();
        for r in out.hours.iter().chain(&out.days) {
            prop_assert!(TIME_RANGE.contains(&r.start));
            prop_assert!(r.stat.avg.is_none_or(f64::is_finite));
        }
    }

    /// A status rule by bits, with bit numbers a validated file never has (past 63): those
    /// bits are simply not set.
    #[test]
    fn a_status_bit_rule_takes_any_bit_number(bits in proptest::collection::btree_map(any::<u8>(), 0..4u8, 0..6), raw in any::<i64>()) {
        let flags = [Flag::M, Flag::C, Flag::D, Flag::F];
        let map: BTreeMap<u8, Flag> = bits.iter().map(|(b, f)| (*b, flags[usize::from(*f)])).collect();
        let got = status_flag(&StatusRule::Bits(map.clone()), raw);
        let expected = map
            .iter()
            .filter(|(b, _)| **b < 64 && (raw >> **b) & 1 == 1)
            .map(|(_, f)| *f)
            .max_by_key(|f| f.severity())
            .unwrap_or(Flag::N);
        prop_assert_eq!(got, expected);
    }

    /// Any register map, up to the top of the address space: every value in exactly one block,
    /// no block over the Modbus limit or past address 65535.
    #[test]
    fn read_plans_cover_any_register_map(
        regs in proptest::collection::vec((any::<bool>(), any::<u16>(), 0..6usize), 1..60),
        gap in any::<u16>(),
    ) {
        let types = [DataType::U16, DataType::I16, DataType::U32, DataType::I32, DataType::F32, DataType::F64];
        let values: Vec<RegisterRef> = regs
            .iter()
            .map(|(input, address, ty)| RegisterRef {
                table: if *input { Table::Input } else { Table::Holding },
                address: *address,
                ty: types[*ty],
                order: WordOrder::Abcd,
            })
            .collect();
        let blocks = plan_reads(&values, gap);
        let mut seen = vec![0; values.len()];
        for b in &blocks {
            prop_assert!(b.count <= MAX_REGS_PER_READ);
            for &(i, offset) in &b.members {
                seen[i] += 1;
                prop_assert_eq!(values[i].table, b.table);
                prop_assert_eq!(u32::from(b.start) + u32::from(offset), u32::from(values[i].address));
                prop_assert!(u32::from(offset) + u32::from(values[i].ty.words()) <= u32::from(b.count));
            }
        }
        prop_assert!(seen.iter().all(|n| *n == 1), "{:?}", seen);
    }
}
