//! Wall-clock time and its two text forms: RFC 3339 for the API and logs, and
//! the IMF-fixdate of HTTP's `Date` header.
//!
//! Both are formatted by hand from Unix seconds (Howard Hinnant's
//! `civil_from_days`), which is twenty lines against a date crate and its
//! time-zone database. Everything here is UTC: the server never needs a local
//! time zone, and API clients convert for display.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now; for log timestamps.
pub fn unix_now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A calendar date and time of day in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: u32, // 0 = Sunday
}

fn civil(unix: u64) -> Civil {
    let days = (unix / 86_400) as i64;
    let secs = (unix % 86_400) as u32;
    // civil_from_days: http://howardhinnant.github.io/date_algorithms.html
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: secs / 3_600,
        minute: secs / 60 % 60,
        second: secs % 60,
        weekday: ((days + 4).rem_euclid(7)) as u32,
    }
}

/// `2026-11-21T13:14:00Z`: the form of every timestamp in API bodies.
pub fn rfc3339(unix: u64) -> String {
    let c = civil(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2026-11-21T13:14:00.123Z`: log timestamps, with milliseconds.
pub fn rfc3339_millis(unix_millis: u128) -> String {
    let secs = (unix_millis / 1_000) as u64;
    let c = civil(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        unix_millis % 1_000
    )
}

/// `Sat, 21 Nov 2026 13:14:00 GMT`: the IMF-fixdate of RFC 9110 section 5.6.7.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// A number of seconds as people say it: "15 minutes", "1 hour", "30
/// seconds", "7 days"; the largest unit that divides it exactly (days from
/// two on).
pub fn duration_in_words(secs: u64) -> String {
    let (n, unit) = match secs {
        // A single day reads better as "24 hours"; longer spans in days.
        s if s >= 2 * 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_in_words(900), "15 minutes");
        assert_eq!(duration_in_words(3600), "1 hour");
        assert_eq!(duration_in_words(86_400), "24 hours");
        assert_eq!(duration_in_words(604_800), "7 days");
        assert_eq!(duration_in_words(90_000), "25 hours");
        assert_eq!(duration_in_words(90), "90 seconds");
        assert_eq!(duration_in_words(60), "1 minute");
        assert_eq!(duration_in_words(1), "1 second");
        assert_eq!(duration_in_words(0), "0 seconds");
    }

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110's own example of an IMF-fixdate.
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        // A leap day and the last second of a year.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_199), "2023-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_042),
            "2023-11-14T22:13:20.042Z"
        );
    }

    #[test]
    fn every_day_for_a_few_centuries_round_trips() {
        // Walk day by day and check the calendar advances by exactly one day.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for day in 0..(366 * 250) {
            let c = civil(day * 86_400);
            assert_eq!((c.year, c.month, c.day), (y, m, d), "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
