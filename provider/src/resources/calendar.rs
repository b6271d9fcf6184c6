//! The calendar-event grammar Proxmox job schedules use (systemd.time's calendar events, as
//! PVE and PBS accept them), checked at plan time:
//!
//! ```text
//! event    = shortcut | [weekdays] [date] [time]          (at least one part, in this order)
//! shortcut = minutely | hourly | daily | weekly | monthly | yearly | annually | quarterly | semiannually
//! weekdays = day ["..", day] {"," day [".." day]}         e.g. mon..fri   sat,sun
//! date     = [year "-"] month "-" day                     e.g. *-*-*   *-1..7   2025-01-01
//! time     = hour ":" minute [":" second]                 e.g. 02:30   *:0/15
//! field    = item {"," item};  item = "*" | n | n ".." m, each optionally "/" step
//! ```
//!
//! Errors name the part that is wrong, e.g. `"fry" is not a weekday`.

const SHORTCUTS: &[&str] =
    &["minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually"];

const DAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Checks one calendar event; the error says which part is wrong and why.
pub fn check(event: &str) -> Result<(), String> {
    let s = event.trim();
    if s.is_empty() {
        return Err("the schedule is empty: use e.g. \"daily\", \"mon..fri 02:00\" or \"*-*-* 02:30\"".into());
    }
    let tokens: Vec<&str> = s.split_whitespace().collect();
    if tokens.len() == 1 && SHORTCUTS.contains(&tokens[0].to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    // Each part may appear once, in the order weekdays, date, time.
    let mut stage = 0;
    for tok in &tokens {
        let lower = tok.to_ascii_lowercase();
        if SHORTCUTS.contains(&lower.as_str()) {
            return Err(format!("{tok:?}: a shortcut like this stands alone, it cannot be combined with other parts"));
        }
        let (kind, result) = if tok.contains(':') {
            (3, check_time(tok))
        } else if tok.contains('-') {
            (2, check_date(tok))
        } else if tok.starts_with(|c: char| c.is_ascii_alphabetic()) {
            (1, check_weekdays(tok))
        } else if tok.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
            return Err(format!(
                "{tok:?} is neither a date (month-day or year-month-day, with '-') nor a time (hour:minute, with ':')"
            ));
        } else {
            return Err(format!("{tok:?} is not part of a calendar event"));
        };
        result?;
        if kind <= stage {
            return Err(format!(
                "{tok:?} is out of place: the parts go in the order weekdays, date, time, each at most once"
            ));
        }
        stage = kind;
    }
    Ok(())
}

fn check_weekdays(tok: &str) -> Result<(), String> {
    for item in tok.split(',') {
        let days: Vec<&str> = item.split("..").collect();
        if days.len() > 2 {
            return Err(format!("{item:?}: a weekday range has two ends, like mon..fri"));
        }
        for d in days {
            let l = d.to_ascii_lowercase();
            if !DAYS.iter().any(|(short, long)| *short == l || *long == l) {
                return Err(format!("{d:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)"));
            }
        }
    }
    Ok(())
}

fn check_date(tok: &str) -> Result<(), String> {
    let parts: Vec<&str> = tok.split('-').collect();
    let named: &[(&str, u32, u32)] = match parts.len() {
        2 => &[("month", 1, 12), ("day", 1, 31)],
        3 => &[("year", 1970, 2199), ("month", 1, 12), ("day", 1, 31)],
        _ => return Err(format!("{tok:?}: a date is month-day or year-month-day, e.g. *-*-* or *-1..7")),
    };
    for (p, (name, lo, hi)) in parts.iter().zip(named) {
        check_field(p, name, *lo, *hi).map_err(|e| format!("{tok:?}: {e}"))?;
    }
    Ok(())
}

fn check_time(tok: &str) -> Result<(), String> {
    let parts: Vec<&str> = tok.split(':').collect();
    let named: &[(&str, u32, u32)] = match parts.len() {
        2 => &[("hour", 0, 23), ("minute", 0, 59)],
        3 => &[("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59)],
        _ => return Err(format!("{tok:?}: a time is hour:minute or hour:minute:second, e.g. 02:30")),
    };
    for (p, (name, lo, hi)) in parts.iter().zip(named) {
        check_field(p, name, *lo, *hi).map_err(|e| format!("{tok:?}: {e}"))?;
    }
    Ok(())
}

/// One field: `item {"," item}`, item = `*` | `n` | `n..m`, optionally `/step`.
fn check_field(field: &str, name: &str, lo: u32, hi: u32) -> Result<(), String> {
    if field.is_empty() {
        return Err(format!("the {name} is missing"));
    }
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("{item:?}: the repetition after '/' must be a positive number")),
            }
        }
        if range == "*" {
            continue;
        }
        let ends: Vec<&str> = range.split("..").collect();
        if ends.len() > 2 {
            return Err(format!("{item:?}: a range has two ends, like 1..7"));
        }
        let mut prev = None;
        for e in &ends {
            let n: u32 =
                e.parse().map_err(|_| format!("{e:?} is not a valid {name} (a number from {lo} to {hi}, or *)"))?;
            if n < lo || n > hi {
                return Err(format!("{name} {n} is out of range {lo}..{hi}"));
            }
            if let Some(p) = prev {
                if n < p {
                    return Err(format!("{item:?}: the range runs backwards"));
                }
            }
            prev = Some(n);
        }
    }
    Ok(())
}

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
