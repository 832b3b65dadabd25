//! Time as the model writes it: timestamps in RFC 3339 with microseconds, durations as
//! milliseconds.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialized as RFC 3339 with microseconds (`2026-11-22T10:00:00.123456Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch (0 before it).
    pub fn unix_millis(&self) -> u64 {
        self.0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The time `ms` milliseconds after the Unix epoch.
    pub fn from_unix_millis(ms: u64) -> Self {
        Self(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
    }
}

impl Timestamp {
    /// RFC 3339 with microseconds, UTC, written straight into a buffer: every event carries
    /// one, and the journal writes tens of thousands a second (a formatter's machinery, as
    /// `humantime`'s, costs several times as much). Before the epoch, or after year 9999, it
    /// is `humantime`'s text.
    fn rfc3339(&self) -> Option<[u8; 27]> {
        let since = self.0.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let secs = since.as_secs();
        let days = secs / 86_400;
        if days >= 2_932_897 {
            return None; // after 9999-12-31
        }
        let (y, m, d) = civil_from_days(days as i64);
        let rem = secs % 86_400;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, digits: usize, mut v: u64| {
            for i in (0..digits).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y as u64);
        put(5, 2, u64::from(m));
        put(8, 2, u64::from(d));
        put(11, 2, rem / 3600);
        put(14, 2, rem / 60 % 60);
        put(17, 2, rem % 60);
        put(20, 6, u64::from(since.subsec_micros()));
        Some(out)
    }
}

/// The civil date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
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

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339() {
            // The buffer holds ASCII digits and separators only.
            Some(text) => f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
            None => write!(f, "{}", humantime::format_rfc3339_micros(self.0)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => match std::str::from_utf8(&text) {
                Ok(text) => s.serialize_str(text),
                Err(_) => s.collect_str(self),
            },
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration in milliseconds, as reports and events give it.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (De)serializes a [`Duration`] as whole milliseconds (`#[serde(with = "...::millis_serde")]`).
pub mod millis_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// (De)serializes an optional [`Duration`] as whole milliseconds.
pub mod millis_opt_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis_serde::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_microseconds() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123);
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(json, "\"2023-11-14T22:13:20.123000Z\"");
        let back: Timestamp = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, t);
        assert_eq!(back.unix_millis(), 1_700_000_000_123);
    }

    #[test]
    fn the_fast_format_is_humantimes_on_every_kind_of_day() {
        // Leap days, century years, ends of months and years, over four centuries.
        let mut ms: u64 = 0;
        while ms < 13_000_000_000_000 {
            let t = Timestamp::from_unix_millis(ms);
            let want = humantime::format_rfc3339_micros(t.0).to_string();
            assert_eq!(t.to_string(), want);
            ms += 86_399_999 + ms % 7_777; // a day, give or take, at every time of day
        }
        let t = Timestamp(SystemTime::UNIX_EPOCH + Duration::new(951_782_400, 999_999_999));
        assert_eq!(t.to_string(), "2000-02-29T00:00:00.999999Z");
    }
}
