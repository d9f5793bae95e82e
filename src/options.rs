//! Numeric command-line options checked for range when they are parsed, in every command:
//! a value outside its range is a usage error (exit 2) naming the option and the range, never
//! a run that does nothing or a panic later.

/// `Ok` when `value` is a finite number from `lo` to `hi` (above `lo`, when `lo_excluded`);
/// else the sentence saying what is accepted.
pub fn check_between(
    option: &str,
    value: f64,
    lo: f64,
    hi: f64,
    lo_excluded: bool,
) -> Result<(), String> {
    let above_lowest = if lo_excluded { value > lo } else { value >= lo };
    if value.is_finite() && above_lowest && value <= hi {
        return Ok(());
    }
    let fmt = |v: f64| {
        if v >= 1.0 && v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        }
    };
    let (from, to) = if lo_excluded {
        ("above", "and at most")
    } else {
        ("from", "to")
    };
    Err(format!(
        "{option} must be a number {from} {} {to} {} (got {value})",
        fmt(lo),
        fmt(hi)
    ))
}

/// A numeric option's value as `T`, from `lo` to `hi`.
pub fn between<T>(option: &str, s: &str, lo: f64, hi: f64) -> Result<T, String>
where
    T: std::str::FromStr + Copy + Into<InRange>,
{
    parse(option, s, lo, hi, false)
}

/// A numeric option's value as `T`, above 0 and at most `hi`.
pub fn positive<T>(option: &str, s: &str, hi: f64) -> Result<T, String>
where
    T: std::str::FromStr + Copy + Into<InRange>,
{
    parse(option, s, 0.0, hi, true)
}

fn parse<T>(option: &str, s: &str, lo: f64, hi: f64, lo_excluded: bool) -> Result<T, String>
where
    T: std::str::FromStr + Copy + Into<InRange>,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("{option} must be a number (got {s:?})"))?;
    check_between(option, v.into().0, lo, hi, lo_excluded)?;
    Ok(v)
}

/// A numeric option's value, as compared with its range.
pub struct InRange(pub f64);

// Every numeric type the options use; `as f64` is exact for the ranges used.
macro_rules! in_range_from {
    ($($t:ty),*) => {$(
        impl From<$t> for InRange {
            fn from(v: $t) -> Self {
                InRange(v as f64)
            }
        }
    )*};
}
in_range_from!(f32, f64, u64, usize);
