//! Maintenance windows: a store in one applies only inside it.
//!
//! A window opens each time its calendar event fires (PBS calendar-event syntax, through
//! `edge-calendar`, so an operator writes windows the way they write backup schedules) and stays
//! open for its length: open at `t` when some firing `s` has `s <= t < s + length`. A window may
//! run past midnight (`sat 23:00` for 3 hours is open until Sunday 02:00), and windows whose
//! firings come closer than their length merge into one longer window.
//!
//! All times are UTC: an event is read as UTC whether or not it ends in ` UTC`.

use std::fmt;

use edge_calendar::Event;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

/// A recurring window, e.g. `sat 23:00` for 180 minutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    event: Event,
    length: Duration,
}

/// Why a window setting is refused; each names the setting it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{setting}: {event:?}: {reason}")]
    Event { setting: String, event: String, reason: String },
    #[error("{setting}: {event:?} never fires, so the window would never open and nothing would be applied")]
    NeverOpens { setting: String, event: String },
    #[error("{setting}: {event:?} for {minutes} minutes: a window lasts at least one minute")]
    Length { setting: String, event: String, minutes: u32 },
}

/// The setting [`MaintenanceWindow::new`]'s errors name: the agent's flag.
const AGENT_FLAG: &str = "--window";

impl MaintenanceWindow {
    /// The window of `event` lasting `minutes`, as the agent's `--window`/`--window-minutes`
    /// give them; errors name `--window`.
    pub fn new(event: &str, minutes: u32) -> Result<Self, WindowError> {
        Self::for_setting(AGENT_FLAG, event, minutes)
    }

    /// The same, for a window from another setting (a key of a file, say): errors name `setting`.
    pub fn for_setting(setting: &str, event: &str, minutes: u32) -> Result<Self, WindowError> {
        let parsed = Event::parse(event).map_err(|reason| WindowError::Event {
            setting: setting.to_owned(),
            event: event.to_owned(),
            reason,
        })?;
        if minutes == 0 {
            // An empty window is never open: the store would silently never apply.
            return Err(WindowError::Length { setting: setting.to_owned(), event: event.to_owned(), minutes });
        }
        // The same silent "never" from an event with no firing at all (`02-30`, a past date).
        // Events' years start at 1970, so a search from then finds any firing there is.
        let before_any = OffsetDateTime::UNIX_EPOCH - Duration::SECOND;
        if parsed.next_after(before_any).is_none() {
            return Err(WindowError::NeverOpens { setting: setting.to_owned(), event: event.to_owned() });
        }
        Ok(MaintenanceWindow { event: parsed, length: Duration::minutes(minutes.into()) })
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    /// Whether the window is open at `t`: some firing `s` with `t - length < s <= t`.
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        // The first firing after `t - length` is the only candidate: if it is later than `t`,
        // every other firing in range would be too.
        let from = t.checked_sub(self.length).unwrap_or_else(|| PrimitiveDateTime::MIN.assume_utc());
        self.event.next_after(from).is_some_and(|s| s <= t)
    }

    /// When an apply may start next: `t` itself if the window is open at `t`, else the next
    /// opening; `None` if the window never opens again (its event's last date has passed).
    pub fn opens_next(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.contains(t) {
            Some(t)
        } else {
            self.event.next_after(t)
        }
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {} min", self.event, self.length.whole_minutes())
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    /// Times written as RFC 3339 (this crate's `time` has no macros).
    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn window(event: &str, minutes: u32) -> MaintenanceWindow {
        MaintenanceWindow::new(event, minutes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_window_over_midnight() {
        // 2025-03-01 is a Saturday.
        let w = window("sat 23:00", 180);
        assert!(!w.contains(at("2025-03-01T22:59:59Z")));
        assert!(w.contains(at("2025-03-01T23:00:00Z")));
        assert!(w.contains(at("2025-03-02T00:30:00Z")), "Sunday, after midnight");
        assert!(w.contains(at("2025-03-02T01:59:59.999Z")));
        assert!(!w.contains(at("2025-03-02T02:00:00Z")), "the end is not in it");
        assert_eq!(w.opens_next(at("2025-03-01T12:00:00Z")), Some(at("2025-03-01T23:00:00Z")));
        assert_eq!(w.opens_next(at("2025-03-02T01:00:00Z")), Some(at("2025-03-02T01:00:00Z")));
        assert_eq!(w.opens_next(at("2025-03-02T02:00:00Z")), Some(at("2025-03-08T23:00:00Z")));

        // Every night, 22:30 to 00:30.
        let w = window("22:30", 120);
        assert!(w.contains(at("2025-03-05T00:15:00Z")));
        assert!(!w.contains(at("2025-03-05T00:30:00Z")));
        assert!(!w.contains(at("2025-03-05T22:29:00Z")));
        assert_eq!(w.opens_next(at("2025-03-05T12:00:00Z")), Some(at("2025-03-05T22:30:00Z")));
    }

    #[test]
    fn a_weekly_window() {
        // `weekly` is Monday 00:00; 2025-03-03 is a Monday.
        let w = window("weekly", 240);
        assert!(w.contains(at("2025-03-03T03:59:00Z")));
        assert!(!w.contains(at("2025-03-03T04:00:00Z")));
        assert!(!w.contains(at("2025-03-02T23:59:00Z")));
        assert_eq!(w.opens_next(at("2025-03-03T04:00:00Z")), Some(at("2025-03-10T00:00:00Z")));

        // Working days only, early morning.
        let w = window("mon..fri 01:00", 30);
        assert!(w.contains(at("2025-03-07T01:10:00Z")), "Friday");
        assert!(!w.contains(at("2025-03-08T01:10:00Z")), "Saturday");
        assert_eq!(w.opens_next(at("2025-03-07T02:00:00Z")), Some(at("2025-03-10T01:00:00Z")));
    }

    #[test]
    fn overlapping_firings_make_one_window() {
        let w = window("*:0/15", 20);
        let mut t = at("2025-03-01T00:00:00Z");
        while t < at("2025-03-01T02:00:00Z") {
            assert!(w.contains(t), "{t}");
            t += Duration::minutes(1);
        }
    }

    #[test]
    fn other_offsets_are_the_same_instants() {
        let w = window("sat 23:00 UTC", 60);
        assert!(w.contains(at("2025-03-02T00:30:00+01:00")));
        assert!(!w.contains(at("2025-03-01T23:30:00+01:00")));
    }

    #[test]
    fn a_one_off_window_closes_for_good() {
        let w = window("2025-06-01 02:00", 60);
        assert!(w.contains(at("2025-06-01T02:30:00Z")));
        assert_eq!(w.opens_next(at("2025-06-01T03:00:00Z")), None);
    }

    #[test]
    fn refuses_bad_settings() {
        let e = MaintenanceWindow::new("sat 25:00", 60).expect_err("hour 25");
        assert_eq!(e.to_string(), r#"--window: "sat 25:00": "25:00": hour 25 is out of range 0..23"#);
        let e = MaintenanceWindow::new("sat 23:00", 0).expect_err("no length");
        assert!(matches!(e, WindowError::Length { .. }), "{e}");
        assert_eq!(e.to_string(), r#"--window: "sat 23:00" for 0 minutes: a window lasts at least one minute"#);
        let e = MaintenanceWindow::for_setting("window", "02-30", 60).expect_err("never");
        assert!(matches!(e, WindowError::NeverOpens { .. }), "{e}");
        assert!(e.to_string().starts_with(r#"window: "02-30" never fires"#), "{e}");
        // An empty event is refused before its length is looked at.
        let e = MaintenanceWindow::new("", 0).expect_err("empty");
        assert!(matches!(e, WindowError::Event { .. }), "{e}");
    }

    #[test]
    fn shows_itself() {
        assert_eq!(window("sat 23:00", 180).to_string(), "sat 23:00 for 180 min");
    }
}
