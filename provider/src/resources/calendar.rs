//! The calendar-event grammar Proxmox job schedules use (systemd.time-like calendar events, as
//! PVE and PBS accept them), checked at plan time. The grammar, its meaning and the search for
//! the next firing live in `edge-calendar`, shared with the fleet tool's maintenance windows;
//! this module keeps the provider's name for the check.
//!
//! Errors name the part that is wrong, e.g. `"fry" is not a weekday`.

pub use edge_calendar::check;

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_proxmox_examples() {
        for ok in [
            "daily",
            "weekly",
            "hourly",
            "mon..fri 02:00",
            "*-*-* 02:30",
            "sat *-1..7 15:00",
            "02:00",
            "mon",
            "mon,wed,fri 22:15",
            "*:0/15",
            "*-*-* *:00:00",
            "2025-01-01 00:00",
            "sun 3:30",
            "Mon..Fri 8..17:00",
            "*/2:00",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let cases = [
            ("mon..fry 02:00", "\"fry\""),
            ("daily 02:00", "stands alone"),
            ("02:00 mon", "out of place"),
            ("*-*-* 25:00", "hour 25"),
            ("*-13-01", "month 13"),
            ("12:61", "minute 61"),
            ("*-*-* 02:30:99", "second 99"),
            ("", "empty"),
            ("sat *-1..7..9 15:00", "two ends"),
            ("*:0/0", "positive"),
            ("*-7..1", "backwards"),
            ("1230", "neither"),
            ("!", "not part"),
            ("mon..tue..wed", "two ends"),
            ("1:2:3:4", "hour:minute"),
            ("x:00", "\"x\""),
        ];
        for (bad, want) in cases {
            let e = check(bad).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e} should mention {want}");
        }
    }
}
