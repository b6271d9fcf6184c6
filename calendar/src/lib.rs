//! Proxmox calendar events: the systemd.time-like schedules PVE and PBS jobs take, parsed,
//! matched against times, and searched for their next firing.
//!
//! ```text
//! event    = (shortcut | [weekdays] [date] [time]) [" UTC"]   (at least one part, in this order)
//! shortcut = minutely | hourly | daily | weekly | monthly | yearly | annually
//!          | quarterly | semiannually | semi-annually
//! weekdays = day [".." day] {"," day [".." day]}     e.g. mon..fri   sat,sun   fri..mon
//! date     = [year "-"] month "-" day                e.g. *-*-*   *-1..7   2025-01-01
//! time     = hour ":" minute [":" second]            e.g. 02:30   *:0/15
//! field    = "*" ["/" step] | item {"," item};   item = n [".." m] ["/" step]
//! ```
//!
//! Parts are separated by spaces. Weekday names (`mon` or `monday`) ignore case; shortcuts and
//! `UTC` do not. Years run 1970..2199, months 1..12, days 1..31, hours 0..23, minutes and
//! seconds 0..59; a step is 1 up to the field's largest value.
//!
//! # Meaning
//!
//! It is proxmox-time's, the crate PBS uses and PVE reaches through pve-rs (repository
//! proxmox/proxmox-rs, branch master at f3305009; stable-bookworm has the same code;
//! `proxmox-time/src/calendar_event.rs`, `CalendarEvent` and `compute_next_event`):
//!
//! - An event fires at every second whose year, month, day, weekday, hour, minute and second are
//!   all allowed: a weekday *and* a date part must both hold (`sat *-1..7` is the first Saturday
//!   of a month).
//! - A missing part allows every value, except the time: no time part means `00:00:00`, and
//!   `hour:minute` means second 0. `*` allows every value of its field.
//! - `n/s` is n, n+s, n+2s… up to the field's end; `a..b/s` stops at b; `*/s` starts at the
//!   field's lowest value: 0 for hours, minutes, seconds and (as in proxmox-time) years, 1 for
//!   months and days (`*-*-*/2` is days 1, 3, 5…).
//! - A weekday range may wrap: `fri..mon` is Friday to Monday.
//! - Shortcuts: `minutely` = `*:*:00`, `hourly` = `*:00:00`, `daily` = `00:00`, `weekly` =
//!   `mon 00:00`, `monthly` = `*-*-01 00:00`, `yearly`/`annually` = `*-01-01 00:00`,
//!   `quarterly` = `*-01,04,07,10-01 00:00`, `semiannually`/`semi-annually` = `*-01,07-01 00:00`.
//!
//! # Time zone
//!
//! Everything here is UTC. proxmox-time evaluates an event in the host's local time zone unless
//! it ends in ` UTC` (its only zone suffix); the suffix is accepted here and changes nothing,
//! and [`Event::explicit_utc`] tells whether it was written. For a host whose zone is not UTC,
//! an event without the suffix fires at a different instant on that host than computed here.
//!
//! # Where this differs from proxmox-time on purpose
//!
//! - Accepted strings are a subset of proxmox-time's: it also takes a lone minute (`30`), month
//!   or day 0, years before 1970, `n/0`, parts run together (`mon02:00`) and some trailing
//!   blanks. None of these is taken here, so a string that passes [`check`] also passes PVE/PBS.
//! - [`Event::next_after`] is the first firing after a time. proxmox-time's search can step past
//!   a firing when a step or a day number runs over the end of its hour, day or month (`*:0/7`
//!   after 21:57 gives 22:07, not 22:00); [`Event::proxmox_next_after`] reproduces that search
//!   for when what PBS will compute is wanted rather than the firing set.

mod field;
mod next;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use time::{OffsetDateTime, UtcOffset};

use field::{Field, Weekdays};

/// A parsed calendar event.
///
/// Two events are equal when they were written the same way (the text is kept for display).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    text: String,
    utc: bool,
    weekdays: Weekdays,
    year: Field,
    month: Field,
    day: Field,
    hour: Field,
    minute: Field,
    second: Field,
}

/// Checks one calendar event; the error says which part is wrong and why, e.g.
/// `"fry" is not a weekday (mon, tue, wed, thu, fri, sat, sun)`.
///
/// The same as `Event::parse(event).map(|_| ())`: what passes here parses, and the other way round.
pub fn check(event: &str) -> Result<(), String> {
    Event::parse(event).map(|_| ())
}

impl Event {
    /// Parses an event (grammar in the crate documentation).
    pub fn parse(event: &str) -> Result<Event, String> {
        parse::parse(event)
    }

    /// The event as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the event ends in ` UTC`. Times here are UTC either way; on a PVE/PBS host the
    /// suffix is what makes the host use UTC instead of its local zone.
    pub fn explicit_utc(&self) -> bool {
        self.utc
    }

    /// Whether the event fires in the second `t` falls in. proxmox-time works on whole epoch
    /// seconds, so sub-second parts of `t` are ignored; with no seconds in the event (the usual
    /// case) that amounts to minute resolution, firing at second 0.
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let t = t.to_offset(UtcOffset::UTC);
        self.year_holds(t.year())
            && self.month.contains(u8::from(t.month()).into())
            && self.day.contains(t.day().into())
            && self.weekdays.contains(t.weekday().number_days_from_monday())
            && self.hour.contains(t.hour().into())
            && self.minute.contains(t.minute().into())
            && self.second.contains(t.second().into())
    }

    /// The first time strictly after `t` at which the event fires (a whole second, in UTC), or
    /// `None` if it fires no more before the end of the year 9999 (e.g. `2021-02-29`, or a date
    /// already past).
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        next::first_after(self, t)
    }

    /// What proxmox-time's `CalendarEvent::compute_next_event` returns for `t` (in UTC, as for an
    /// event with the `UTC` suffix): the same as [`Event::next_after`] except where its search
    /// steps past a firing (a repetition or a day number running over the end of its hour, day
    /// or month: `*:0/7` after 21:57 gives 22:07; `*-*-1,31` after February 15 gives March 31),
    /// and `None` where it gives up after 1000 steps (`02-30`, which never fires anyway).
    pub fn proxmox_next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        next::proxmox_after(self, t)
    }

    /// Whether the year part allows `y` (a year before 0 only if every year is allowed).
    fn year_holds(&self, y: i32) -> bool {
        self.year.is_any() || u32::try_from(y).is_ok_and(|y| self.year.contains(y))
    }
}

impl FromStr for Event {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Event::parse(s)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
