//! The grammar: one string to an [`Event`], or an error that names the wrong part.
//!
//! Reading of proxmox-time (proxmox/proxmox-rs, branch master, `proxmox-time/src/calendar_event.rs`,
//! `parse_calendar_event_incomplete`, `parse_date_spec`, `parse_time_spec`,
//! `parse_date_time_comp_list`; `week_days.rs`, `parse_weekdays_range`): what is accepted here is
//! accepted there too, and means the same. Where proxmox-time is looser than this grammar (a lone
//! minute such as `30`, month or day 0, years before 1970, `n/0`, parts written without a space
//! between them, blanks after a weekday or date part), the string is refused here; that keeps
//! the provider's plan-time check from passing something that PVE or PBS would then reject.

use crate::field::{Field, Item, Weekdays};
use crate::Event;

/// The shortcuts and what proxmox-time expands them to (`parse_calendar_event_incomplete`).
/// Written in lower case only: proxmox-time compares them exactly.
pub(crate) const SHORTCUTS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "semi-annually",
];

const DAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// What a field is called in errors, its allowed values, and where `*/step` starts.
struct Spec {
    name: &'static str,
    lo: u32,
    hi: u32,
    star_start: u32,
}

// Years stop at 2199 because proxmox-time does ("the upper limit for systemd"); they start at
// 1970 because nothing before the epoch can be a job's next run.
const YEAR: Spec = Spec { name: "year", lo: 1970, hi: 2199, star_start: 0 };
const MONTH: Spec = Spec { name: "month", lo: 1, hi: 12, star_start: 1 };
const DAY: Spec = Spec { name: "day", lo: 1, hi: 31, star_start: 1 };
const HOUR: Spec = Spec { name: "hour", lo: 0, hi: 23, star_start: 0 };
const MINUTE: Spec = Spec { name: "minute", lo: 0, hi: 59, star_start: 0 };
const SECOND: Spec = Spec { name: "second", lo: 0, hi: 59, star_start: 0 };

/// The time-zone suffix proxmox-time knows (the only one).
const UTC: &str = "UTC";

pub(crate) fn parse(event: &str) -> Result<Event, String> {
    if event.trim().is_empty() {
        return Err("the schedule is empty: use e.g. \"daily\", \"mon..fri 02:00\" or \"*-*-* 02:30\"".into());
    }
    if event.trim() != event {
        // proxmox-time does not trim: a leading blank fails there, so it must fail here.
        return Err(format!("{event:?}: remove the blanks before or after the event"));
    }
    if let Some(c) = event.chars().find(|c| c.is_whitespace() && *c != ' ') {
        return Err(format!("{c:?} in {event:?}: separate the parts with spaces"));
    }
    let mut tokens: Vec<&str> = event.split(' ').filter(|t| !t.is_empty()).collect();
    let utc = tokens.last() == Some(&UTC);
    if utc {
        tokens.pop();
        if tokens.is_empty() {
            return Err(format!("{UTC:?} alone is no event: it follows one, e.g. \"daily UTC\""));
        }
    } else if let Some(last) = tokens.last().filter(|t| t.eq_ignore_ascii_case(UTC)) {
        return Err(format!("{last:?}: the time-zone suffix is written {UTC:?}"));
    }

    let mut ev = Event {
        text: event.to_owned(),
        utc,
        weekdays: Weekdays::default(),
        year: Field::any(),
        month: Field::any(),
        day: Field::any(),
        // Without a time part an event fires at midnight (proxmox-time sets 0:0:0).
        hour: Field::single(0),
        minute: Field::single(0),
        second: Field::single(0),
    };

    if let [tok] = tokens[..] {
        if shortcut(tok, &mut ev) {
            return Ok(ev);
        }
        if SHORTCUTS.contains(&tok.to_ascii_lowercase().as_str()) {
            return Err(format!("{tok:?}: shortcuts are written in lower case ({:?})", tok.to_ascii_lowercase()));
        }
    }

    // Each part may appear once, in the order weekdays, date, time.
    let mut stage = 0;
    for tok in &tokens {
        let lower = tok.to_ascii_lowercase();
        if SHORTCUTS.contains(&lower.as_str()) {
            return Err(format!("{tok:?}: a shortcut like this stands alone, it cannot be combined with other parts"));
        }
        if lower == "utc" {
            return Err(format!("{tok:?}: the time-zone suffix {UTC:?} goes last, e.g. \"mon 02:00 UTC\""));
        }
        let kind = if tok.contains(':') {
            let (hour, minute, second) = parse_time(tok)?;
            (ev.hour, ev.minute, ev.second) = (hour, minute, second);
            3
        } else if tok.contains('-') {
            let (year, month, day) = parse_date(tok)?;
            (ev.year, ev.month, ev.day) = (year, month, day);
            2
        } else if tok.starts_with(|c: char| c.is_ascii_alphabetic()) {
            ev.weekdays = parse_weekdays(tok)?;
            1
        } else if tok.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
            // proxmox-time reads a lone number as a minute ("30" = every hour at :30); that is
            // too easy to misread as an hour, so it is refused here.
            return Err(format!(
                "{tok:?} is neither a date (month-day or year-month-day, with '-') nor a time (hour:minute, with ':')"
            ));
        } else {
            return Err(format!("{tok:?} is not part of a calendar event"));
        };
        if kind <= stage {
            return Err(format!(
                "{tok:?} is out of place: the parts go in the order weekdays, date, time, each at most once"
            ));
        }
        stage = kind;
    }
    Ok(ev)
}

/// Expands a shortcut in place; false if `tok` is none.
fn shortcut(tok: &str, ev: &mut Event) -> bool {
    let midnight = |ev: &mut Event| {
        ev.hour = Field::single(0);
        ev.minute = Field::single(0);
        ev.second = Field::single(0);
    };
    match tok {
        "minutely" => {
            (ev.hour, ev.minute, ev.second) = (Field::any(), Field::any(), Field::single(0));
        }
        "hourly" => {
            (ev.hour, ev.minute, ev.second) = (Field::any(), Field::single(0), Field::single(0));
        }
        "daily" => midnight(ev),
        "weekly" => {
            midnight(ev);
            ev.weekdays = Weekdays(1); // Monday
        }
        "monthly" => {
            midnight(ev);
            ev.day = Field::single(1);
        }
        "yearly" | "annually" => {
            midnight(ev);
            ev.day = Field::single(1);
            ev.month = Field::single(1);
        }
        "quarterly" => {
            midnight(ev);
            ev.day = Field::single(1);
            ev.month = Field([1, 4, 7, 10].map(Item::Single).to_vec());
        }
        "semiannually" | "semi-annually" => {
            midnight(ev);
            ev.day = Field::single(1);
            ev.month = Field([1, 7].map(Item::Single).to_vec());
        }
        _ => return false,
    }
    true
}

fn parse_weekdays(tok: &str) -> Result<Weekdays, String> {
    let mut set = 0u8;
    for item in tok.split(',') {
        let days: Vec<&str> = item.split("..").collect();
        if days.len() > 2 {
            return Err(format!("{item:?}: a weekday range has two ends, like mon..fri"));
        }
        let mut idx = Vec::with_capacity(2);
        for d in days {
            let l = d.to_ascii_lowercase();
            match DAYS.iter().position(|(short, long)| *short == l || *long == l) {
                Some(i) => idx.push(i),
                None => return Err(format!("{d:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")),
            }
        }
        match idx[..] {
            [a] => set |= 1 << a,
            // A range may run over the week's end: fri..mon is fri, sat, sun, mon
            // (`parse_weekdays_range`).
            [a, b] => {
                let mut i = a;
                loop {
                    set |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            _ => unreachable!("one or two days, checked above"),
        }
    }
    Ok(Weekdays(set))
}

fn parse_date(tok: &str) -> Result<(Field, Field, Field), String> {
    let parts: Vec<&str> = tok.split('-').collect();
    let wrap = |e: String| format!("{tok:?}: {e}");
    match parts[..] {
        [m, d] => Ok((Field::any(), parse_field(m, &MONTH).map_err(wrap)?, parse_field(d, &DAY).map_err(wrap)?)),
        [y, m, d] => Ok((
            parse_field(y, &YEAR).map_err(wrap)?,
            parse_field(m, &MONTH).map_err(wrap)?,
            parse_field(d, &DAY).map_err(wrap)?,
        )),
        _ => Err(format!("{tok:?}: a date is month-day or year-month-day, e.g. *-*-* or *-1..7")),
    }
}

fn parse_time(tok: &str) -> Result<(Field, Field, Field), String> {
    let parts: Vec<&str> = tok.split(':').collect();
    let wrap = |e: String| format!("{tok:?}: {e}");
    match parts[..] {
        // Seconds default to 0, as in proxmox-time's `parse_time_spec`.
        [h, m] => Ok((parse_field(h, &HOUR).map_err(wrap)?, parse_field(m, &MINUTE).map_err(wrap)?, Field::single(0))),
        [h, m, s] => Ok((
            parse_field(h, &HOUR).map_err(wrap)?,
            parse_field(m, &MINUTE).map_err(wrap)?,
            parse_field(s, &SECOND).map_err(wrap)?,
        )),
        _ => Err(format!("{tok:?}: a time is hour:minute or hour:minute:second, e.g. 02:30")),
    }
}

/// `"*" ["/" step] | item {"," item}`, item = `n [".." m] ["/" step]`.
fn parse_field(field: &str, spec: &Spec) -> Result<Field, String> {
    let Spec { name, lo, hi, star_start } = *spec;
    if field.is_empty() {
        return Err(format!("the {name} is missing"));
    }
    let items: Vec<&str> = field.split(',').collect();
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (*item, None),
        };
        let step = match step {
            None => None,
            // proxmox-time takes a repetition below the field's limit (`parse_time_comp(max)`),
            // and reads `n/0` as `n`, which is surely a typo: refused.
            Some(s) => match number(s) {
                Some(n) if (1..=hi).contains(&n) => Some(n),
                _ => return Err(format!("{item:?}: the repetition after '/' must be a positive number, at most {hi}")),
            },
        };
        if range == "*" {
            // proxmox-time takes `*` or `*/step` only as the whole field, never in a list.
            if items.len() > 1 {
                return Err(format!("{field:?}: '*' stands for every {name} and cannot be part of a list"));
            }
            return Ok(match step {
                None => Field::any(),
                Some(step) => Field(vec![Item::Step { start: star_start, step, end: None }]),
            });
        }
        let ends: Vec<&str> = range.split("..").collect();
        if ends.len() > 2 {
            return Err(format!("{item:?}: a range has two ends, like 1..7"));
        }
        let mut values = Vec::with_capacity(2);
        for e in &ends {
            let n =
                number(e).ok_or_else(|| format!("{e:?} is not a valid {name} (a number from {lo} to {hi}, or *)"))?;
            if n < lo || n > hi {
                return Err(format!("{name} {n} is out of range {lo}..{hi}"));
            }
            if values.last().is_some_and(|&p| n < p) {
                return Err(format!("{item:?}: the range runs backwards"));
            }
            values.push(n);
        }
        out.push(match (&values[..], step) {
            (&[n], None) => Item::Single(n),
            (&[a, b], None) => Item::Range(a, b),
            (&[n], Some(step)) => Item::Step { start: n, step, end: None },
            (&[a, b], Some(step)) => Item::Step { start: a, step, end: Some(b) },
            _ => unreachable!("one or two ends, checked above"),
        });
    }
    Ok(Field(out))
}

/// Decimal digits only: `str::parse` would also take a leading '+', which proxmox-time does not.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
