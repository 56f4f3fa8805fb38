//! Unit and state conversions of HJ 212-2017 Annex D, each with its equation number.
//!
//! Pure functions of numbers. Temperatures in °C, pressures in Pa, moisture and O2 in %,
//! concentrations in mg/m³, flows in m³/h as the equations write them (table B.2's unit for
//! flow values is m³/s: [`per_second`]). The standard state is 273 K and 101325 Pa, as the
//! standard writes it (not 273.15 K).

/// Standard pressure (Pa).
pub const P_STANDARD: f64 = 101_325.0;
/// Standard temperature (K), as HJ 212 Annex D uses it.
pub const T_STANDARD: f64 = 273.0;
/// Molar volume at standard state (L/mol), equation (20).
pub const MOLAR_VOLUME: f64 = 22.4;
/// M(NO2)/M(NO) = 46.01/30.01, equation (21).
pub const NOX_PER_NO: f64 = 46.01 / 30.01;

/// Molar mass (g/mol) of the gases an analyzer may report in ppm. NOx is expressed as NO2.
pub fn molar_mass(factor: &str) -> Option<f64> {
    Some(match factor {
        "a21026" => 64.06,            // SO2
        "a21003" => 30.01,            // NO
        "a21004" | "a21002" => 46.01, // NO2, NOx as NO2
        "a21005" => 28.01,            // CO
        "a21001" => 17.03,            // NH3
        "a21028" => 34.08,            // H2S
        "a21024" => 36.46,            // HCl
        _ => return None,
    })
}

/// (20) ppm (µmol/mol) → mg/m³ at standard state: `Cq = Cv × M / 22.4`.
pub fn ppm_to_mg_m3(ppm: f64, molar_mass: f64) -> f64 {
    ppm * molar_mass / MOLAR_VOLUME
}

/// Inverse of [`ppm_to_mg_m3`].
pub fn mg_m3_to_ppm(mg: f64, molar_mass: f64) -> f64 {
    mg * MOLAR_VOLUME / molar_mass
}

/// (21) NOx as NO2 from separately measured NO and NO2 (both mg/m³): `NO × 46.01/30.01 + NO2`.
pub fn nox_from_no_no2(no: f64, no2: f64) -> f64 {
    no * NOX_PER_NO + no2
}

/// (19) wet → dry basis: `C_dry = C_wet / (1 − Xsw)`. `None` when the moisture is not below 100 %.
pub fn wet_to_dry(c_wet: f64, moisture_pct: f64) -> Option<f64> {
    let x = moisture_pct / 100.0;
    (0.0..1.0).contains(&x).then(|| c_wet / (1.0 - x))
}

/// Inverse of [`wet_to_dry`].
pub fn dry_to_wet(c_dry: f64, moisture_pct: f64) -> f64 {
    c_dry * (1.0 - moisture_pct / 100.0)
}

/// (18) actual → standard state: `Csn = Cs × 101325/(Ba + Ps) × (273 + ts)/273`, with
/// `abs_pressure_pa = Ba + Ps`. `None` for a non-positive absolute pressure or temperature.
pub fn to_standard_state(c_actual: f64, temp_c: f64, abs_pressure_pa: f64) -> Option<f64> {
    (abs_pressure_pa > 0.0 && temp_c + T_STANDARD > 0.0)
        .then(|| c_actual * P_STANDARD / abs_pressure_pa * (T_STANDARD + temp_c) / T_STANDARD)
}

/// Inverse of [`to_standard_state`].
pub fn to_actual_state(c_standard: f64, temp_c: f64, abs_pressure_pa: f64) -> f64 {
    c_standard * abs_pressure_pa / P_STANDARD * T_STANDARD / (T_STANDARD + temp_c)
}

/// Why a reference-oxygen conversion was not made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum O2Guard {
    /// Measured O2 at or above the guard (close to air): the divisor `21 − O2` is near zero
    /// and the result would be meaningless.
    NearAir { o2: f64, guard: f64 },
    /// Measured O2 below zero: not a physical reading.
    Negative(f64),
}

/// (28) reference-oxygen conversion: `C_zs = C × (21 − O2_ref)/(21 − O2_meas)` (O2 dry, %).
///
/// A gateway choice, not a rule of the standard (which is silent): at or above `guard` % O2 the
/// value is not converted and the caller marks it, instead of dividing by almost zero.
pub fn reference_o2(c: f64, o2_meas: f64, o2_ref: f64, guard: f64) -> Result<f64, O2Guard> {
    if o2_meas >= guard {
        return Err(O2Guard::NearAir { o2: o2_meas, guard });
    }
    if o2_meas < 0.0 {
        return Err(O2Guard::Negative(o2_meas));
    }
    Ok(c * (21.0 - o2_ref) / (21.0 - o2_meas))
}

/// (29)–(30) actual (wet) flow in m³/h from the measured velocity: `Qsh = 3600 × F × Kv × Vp`.
pub fn actual_flow_m3h(velocity_m_s: f64, area_m2: f64, kv: f64) -> f64 {
    3600.0 * area_m2 * kv * velocity_m_s
}

/// (31) dry standard flow: `Qsnh = Qsh × 273/(273 + ts) × (Ba + Ps)/101325 × (1 − Xsw)`, the
/// product of [`flow_to_standard_state`] and [`flow_to_dry`].
pub fn standard_dry_flow_m3h(q_actual_m3h: f64, temp_c: f64, abs_pressure_pa: f64, moisture_pct: f64) -> f64 {
    flow_to_dry(
        q_actual_m3h * T_STANDARD / (T_STANDARD + temp_c) * abs_pressure_pa / P_STANDARD,
        moisture_pct,
    )
}

/// (31), its state part: a flow at actual state to standard state,
/// `Q × 273/(273 + ts) × (Ba + Ps)/101325`. `None` for a non-positive absolute pressure or
/// temperature.
pub fn flow_to_standard_state(q_actual: f64, temp_c: f64, abs_pressure_pa: f64) -> Option<f64> {
    (abs_pressure_pa > 0.0 && temp_c + T_STANDARD > 0.0)
        .then(|| q_actual * T_STANDARD / (T_STANDARD + temp_c) * abs_pressure_pa / P_STANDARD)
}

/// (31), its moisture part: a wet flow to dry, `Q × (1 − Xsw)`.
pub fn flow_to_dry(q_wet: f64, moisture_pct: f64) -> f64 {
    q_wet * (1.0 - moisture_pct / 100.0)
}

/// A flow in m³/h (the unit of equations (30)–(33)) in m³/s, the unit of table B.2.
pub fn per_second(q_m3h: f64) -> f64 {
    q_m3h / 3600.0
}

/// (33) emission rate in kg/h from the measured (not O2-converted) dry standard concentration
/// and the dry standard flow: `G = C × Q × 10⁻⁶`.
pub fn emission_rate_kg_h(c_mg_m3: f64, q_std_dry_m3h: f64) -> f64 {
    c_mg_m3 * q_std_dry_m3h * 1e-6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn equation_20_ppm_to_mg() {
        // SO2: 100 ppm × 64.06 / 22.4 = 285.982142857...
        assert!(close(ppm_to_mg_m3(100.0, 64.06), 6406.0 / 22.4));
        assert!(close(ppm_to_mg_m3(100.0, molar_mass("a21026").unwrap()), 285.98214285714283));
        // NO: 10 ppm × 30.01 / 22.4 = 13.3973...
        assert!(close(ppm_to_mg_m3(10.0, 30.01), 13.397321428571429));
        assert!(close(mg_m3_to_ppm(ppm_to_mg_m3(37.5, 46.01), 46.01), 37.5));
    }

    #[test]
    fn equation_21_nox_from_parts() {
        // 20 mg/m³ NO × 46.01/30.01 + 3 mg/m³ NO2 = 30.663112... + 3 = 33.663112...
        assert!(close(nox_from_no_no2(20.0, 3.0), 20.0 * 46.01 / 30.01 + 3.0));
        assert!((NOX_PER_NO - 1.533).abs() < 0.001);
    }

    #[test]
    fn equation_19_wet_dry() {
        // 90 mg/m³ wet at 10 % moisture: 90 / 0.9 = 100.
        assert!(close(wet_to_dry(90.0, 10.0).unwrap(), 100.0));
        assert!(close(dry_to_wet(100.0, 10.0), 90.0));
        assert_eq!(wet_to_dry(1.0, 100.0), None);
    }

    #[test]
    fn equation_18_standard_state() {
        // 50 mg/m³ at 120 °C and 100 kPa: 50 × 101325/100000 × 393/273 = 72.93...
        let v = to_standard_state(50.0, 120.0, 100_000.0).unwrap();
        assert!(close(v, 50.0 * 1.01325 * 393.0 / 273.0));
        assert!(close(to_actual_state(v, 120.0, 100_000.0), 50.0));
        assert_eq!(to_standard_state(1.0, 20.0, 0.0), None);
    }

    #[test]
    fn equation_28_reference_oxygen() {
        // 30 mg/m³ at 13 % O2 to 10 %: 30 × 11/8 = 41.25.
        assert!(close(reference_o2(30.0, 13.0, 10.0, 20.5).unwrap(), 41.25));
        // At the reference O2 the value is unchanged; below it the value is lowered.
        assert!(close(reference_o2(30.0, 10.0, 10.0, 20.5).unwrap(), 30.0));
        assert!(close(reference_o2(30.0, 5.0, 10.0, 20.5).unwrap(), 30.0 * 11.0 / 16.0));
        assert_eq!(reference_o2(30.0, 20.6, 10.0, 20.5), Err(O2Guard::NearAir { o2: 20.6, guard: 20.5 }));
        assert_eq!(reference_o2(30.0, 21.0, 10.0, 20.5), Err(O2Guard::NearAir { o2: 21.0, guard: 20.5 }));
        assert_eq!(reference_o2(30.0, -1.0, 10.0, 20.5), Err(O2Guard::Negative(-1.0)));
    }

    #[test]
    fn equations_29_to_31_and_33_flow_and_rate() {
        // 15 m/s in 12.57 m² with Kv 1: 3600 × 12.57 × 15 = 678,780 m³/h actual.
        let q = actual_flow_m3h(15.0, 12.57, 1.0);
        assert!(close(q, 678_780.0));
        // At 130 °C, 100,825 Pa absolute, 8 % moisture:
        // 678780 × 273/403 × 100825/101325 × 0.92 = 420,965.9...
        let qsn = standard_dry_flow_m3h(q, 130.0, 100_825.0, 8.0);
        assert!(close(qsn, 678_780.0 * 273.0 / 403.0 * 100_825.0 / 101_325.0 * 0.92));
        // The same in two steps, state then moisture; and 420,965.9 m³/h is 116.935 m³/s.
        let state = flow_to_standard_state(q, 130.0, 100_825.0).unwrap();
        assert_eq!(flow_to_dry(state, 8.0), qsn);
        assert!(close(per_second(qsn), qsn / 3600.0));
        assert_eq!(flow_to_standard_state(q, -273.0, 100_825.0), None);
        // 20 mg/m³ × 420,965.9 m³/h × 1e-6 = 8.419 kg/h.
        assert!(close(emission_rate_kg_h(20.0, qsn), 20.0 * qsn * 1e-6));
        assert!(close(emission_rate_kg_h(10.0, 100_000.0), 1.0));
    }

    #[test]
    fn conversions_invert_over_a_grid() {
        for c in [0.0, 0.5, 12.3, 250.0, 4999.9] {
            for t in [-10.0, 0.0, 85.0, 180.0] {
                for p in [80_000.0, 101_325.0, 105_000.0] {
                    assert!(close(to_actual_state(to_standard_state(c, t, p).unwrap(), t, p), c));
                }
            }
            for m in [0.0, 5.0, 30.0, 99.0] {
                assert!(close(dry_to_wet(wet_to_dry(c, m).unwrap(), m), c));
            }
        }
    }
}
