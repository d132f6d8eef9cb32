//! REALs as SQL text that every SQLite from 3.37 on reads back to the identical bits.
//!
//! Why not simply the shortest round-trip decimal: SQLite converted decimal text to a
//! double with its own code until about 3.50, and that code is not correctly rounded.
//! 3.39–3.42 divide the digits by a power of ten in `long double` (x87: 64-bit mantissa,
//! then rounded again to 53 bits — double rounding); 3.43–3.46 multiply by `0.1L` once per
//! digit of exponent; builds without `long double` differ again. Each misparses a
//! different one in a few thousand decimals (`-26.819604` in 3.40). So the encoding does
//! not depend on any parser being right where rounding is needed:
//!
//! 1. **Exact decimal** (`3.0`, `-0.5`, `1e20`, `123456789.125`): the shortest decimal
//!    when its value *is* the double. No rounding is needed anywhere, so every parser
//!    whose error is below half an ulp returns the double (all of them are far below).
//! 2. **Decimal quotient** (`(-26819604/1e6)`, `(12345*1e21)`): when the shortest decimal
//!    has digits `s <= 2^53` and a power of ten `10^n, n <= 22`. Both operands are exact
//!    doubles (case 1), and SQLite's `/` and `*` are one IEEE double operation, correctly
//!    rounded — which by definition of the shortest round-trip decimal gives the double.
//!    This is the common case of real data: coordinates, money, measurements.
//! 3. **Binary product** (`(5404319552844596.0/4611686018427387904/4)`): everything else
//!    (16–17 significant digits, huge and tiny magnitudes, subnormals) as `M * 2^E` with an
//!    odd integer `M < 2^53`, scaled by powers of two written as integers. Every step is
//!    exact (the intermediate results are `M * 2^e` with `e` between 0 and `E`).
//!
//! `±Inf` is `1e999`/`-1e999` (overflow is infinite in every version), NaN is `NULL`
//! (SQLite stores NaN as NULL). Cases 2 and 3 assume IEEE double arithmetic, as on every
//! 64-bit platform (x86-64 SSE2, ARM64); a 32-bit x87 build could double-round case 2.

/// `2^53`: integers up to here are exact doubles.
const EXACT_INT_LIMIT: u64 = 1 << 53;
/// Largest power of ten that is an exact double.
const MAX_EXACT_POW10: i32 = 22;
/// The power of two written as one integer factor in the binary form.
const POW2_STEP: i32 = 62;

/// A finite non-zero double's shortest decimal, `±s * 10^k`, with `s` free of trailing zeros.
struct Decimal {
    negative: bool,
    digits: u64,
    exp10: i32,
}

/// Splits a ryu rendering (`-1.5e-7`, `123.25`, `1e20`) into digits and exponent.
fn decimal_parts(text: &str) -> Decimal {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu writes a decimal exponent")),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = 0u64;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        digits = digits * 10 + u64::from(b - b'0');
    }
    let mut exp10 = exp - frac_part.len() as i32;
    while digits != 0 && digits.is_multiple_of(10) {
        digits /= 10;
        exp10 += 1;
    }
    Decimal {
        negative,
        digits,
        exp10,
    }
}

/// `|f| = m * 2^e` with `m` odd (f finite, non-zero).
fn binary_parts(f: f64) -> (u64, i32) {
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut m, mut e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    let shift = m.trailing_zeros();
    m >>= shift;
    e += shift as i32;
    (m, e)
}

/// Whether `digits * 10^exp10` is exactly `m * 2^e` (`m` odd, `digits` without trailing
/// zeros). An odd `m * 2^e` with `e < 0` has exactly `-e` decimal places; an integer
/// has none.
fn decimal_is_exact(d: &Decimal, m: u64, e: i32) -> bool {
    let pow5 = |n: i32| 5u128.checked_pow(n as u32);
    if e < 0 {
        // m / 2^n = m * 5^n / 10^n; the digits must be m * 5^n and the exponent -n.
        d.exp10 == e
            && pow5(-e).and_then(|p| p.checked_mul(u128::from(m))) == Some(u128::from(d.digits))
    } else if d.exp10 < 0 {
        false
    } else {
        // digits * 10^k = (digits / 2^a) * 5^k * 2^(a + k), with digits / 2^a odd.
        let a = d.digits.trailing_zeros() as i32;
        let odd = u128::from(d.digits >> a);
        a + d.exp10 == e && pow5(d.exp10).and_then(|p| p.checked_mul(odd)) == Some(u128::from(m))
    }
}

/// Writes a REAL as SQL that loads back bit-exactly in every SQLite from 3.37 on.
pub fn push_sql_real(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NULL");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"1e999" } else { b"-1e999" });
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    if f == 0.0 {
        out.extend_from_slice(text.as_bytes()); // "0.0" or "-0.0": exact
        return;
    }
    let d = decimal_parts(text);
    let (m, e) = binary_parts(f);
    if decimal_is_exact(&d, m, e) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let sign: &[u8] = if d.negative { b"-" } else { b"" };
    out.push(b'(');
    out.extend_from_slice(sign);
    if d.digits <= EXACT_INT_LIMIT && (-MAX_EXACT_POW10..=MAX_EXACT_POW10).contains(&d.exp10) {
        out.extend_from_slice(itoa::Buffer::new().format(d.digits).as_bytes());
        out.extend_from_slice(if d.exp10 < 0 { b"/1e" } else { b"*1e" });
        out.extend_from_slice(itoa::Buffer::new().format(d.exp10.abs()).as_bytes());
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(m).as_bytes());
        out.extend_from_slice(b".0");
        let op: &[u8] = if e < 0 { b"/" } else { b"*" };
        let mut left = e.abs();
        while left > 0 {
            let step = left.min(POW2_STEP);
            out.extend_from_slice(op);
            out.extend_from_slice(itoa::Buffer::new().format(1u64 << step).as_bytes());
            left -= step;
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(f: f64) -> String {
        let mut out = Vec::new();
        push_sql_real(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    /// Evaluates the encoding the way SQLite does: integer literals, exact decimals, and
    /// IEEE double `*` and `/` from left to right.
    fn eval(text: &str) -> f64 {
        let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) else {
            return text.parse().unwrap();
        };
        let (neg, inner) = inner
            .strip_prefix('-')
            .map_or((false, inner), |r| (true, r));
        let mut ops = inner.split_inclusive(['*', '/']).peekable();
        let mut pending_op = None;
        let mut acc = 0.0;
        let mut first = true;
        for token in ops.by_ref() {
            let (num, op) = match token.strip_suffix(['*', '/']) {
                Some(n) => (n, Some(token.as_bytes()[token.len() - 1])),
                None => (token, None),
            };
            let v: f64 = num.parse().unwrap();
            if first {
                acc = v;
                first = false;
            } else if pending_op == Some(b'*') {
                acc *= v;
            } else {
                acc /= v;
            }
            pending_op = op;
        }
        if neg {
            -acc
        } else {
            acc
        }
    }

    #[test]
    fn forms_are_chosen_by_exactness() {
        assert_eq!(sql(3.0), "3.0");
        assert_eq!(sql(-0.0), "-0.0");
        assert_eq!(sql(-1.5), "-1.5");
        assert_eq!(sql(123456789.125), "123456789.125");
        assert_eq!(sql(1e20), "1e20");
        assert_eq!(sql(-26.819604), "(-26819604/1e6)");
        assert_eq!(sql(19.99), "(1999/1e2)");
        assert_eq!(sql(0.1), "(1/1e1)");
        assert_eq!(sql(1.2345e25), "(12345*1e21)");
        assert_eq!(sql(f64::INFINITY), "1e999");
        assert_eq!(sql(f64::NAN), "NULL");
        assert_eq!(
            sql(5e-324),
            format!("(1.0{})", "/4611686018427387904".repeat(17) + "/1048576")
        );
        assert!(
            sql(0.1 + 0.2).starts_with("(1351079888211149.0/"),
            "{}",
            sql(0.1 + 0.2)
        );
    }

    #[test]
    fn every_form_evaluates_to_the_same_bits() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut samples = vec![
            5e-324,
            -5e-324,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            9007199254740993.0,
            1e22,
            1e23,
            0.3,
        ];
        for _ in 0..200_000 {
            samples.push(f64::from_bits(rng.u64(..)));
            samples.push(((rng.f64() - 0.5) * 360.0 * 1e6).round() / 1e6);
            samples.push((rng.f64() * 1e7).round() / 100.0);
        }
        for f in samples.into_iter().filter(|f| f.is_finite()) {
            let text = sql(f);
            assert_eq!(eval(&text).to_bits(), f.to_bits(), "{f:e} as {text}");
            if !text.starts_with('(') {
                // A plain literal must be the double's exact decimal expansion (Rust
                // prints that with enough precision), not merely round to it.
                let exact = format!("{:.1100e}", f);
                let (digits, _) = exact.split_once('e').unwrap();
                let significant = digits.trim_start_matches('-').replace('.', "");
                let d = decimal_parts(&text);
                assert_eq!(
                    significant.trim_end_matches('0'),
                    d.digits.to_string(),
                    "{f:e} written as {text} is not exact"
                );
            }
        }
    }
}
