//! RFC 3339 UTC timestamps with nanoseconds, as the CRI log format writes
//! them (`2026-11-29T11:35:19.123456789Z`), without a date library.

/// The wall clock now: (seconds since the epoch, nanoseconds).
pub fn now() -> (i64, u32) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass; CLOCK_REALTIME
    // always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// Appends `secs`.`nanos` as `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ` (always nine
/// fraction digits, so every stamp has the same width).
pub fn push_rfc3339(out: &mut Vec<u8>, secs: i64, nanos: u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    push_num(out, y as u64, 4);
    out.push(b'-');
    push_num(out, m as u64, 2);
    out.push(b'-');
    push_num(out, d as u64, 2);
    out.push(b'T');
    push_num(out, (sod / 3600) as u64, 2);
    out.push(b':');
    push_num(out, (sod / 60 % 60) as u64, 2);
    out.push(b':');
    push_num(out, (sod % 60) as u64, 2);
    out.push(b'.');
    push_num(out, nanos as u64, 9);
    out.push(b'Z');
}

/// The current time as an RFC 3339 string.
pub fn now_string() -> String {
    let (s, n) = now();
    let mut v = Vec::with_capacity(30);
    push_rfc3339(&mut v, s, n);
    String::from_utf8(v).expect("ASCII")
}

fn push_num(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for i in (start..start + width).rev() {
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64, nanos: u32) -> String {
        let mut v = Vec::new();
        push_rfc3339(&mut v, secs, nanos);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            fmt(1_795_952_119, 123_456_789),
            "2026-11-29T11:35:19.123456789Z"
        );
        assert_eq!(
            fmt(4_102_444_799, 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn now_is_well_formed() {
        let s = now_string();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
