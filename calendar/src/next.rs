//! Searching for firings: the first one after a time, and proxmox-time's own stepping.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::Event;

/// `time` (without its large-dates feature) stops at the end of 9999: nothing is searched past it.
const LAST_YEAR: i32 = 9999;

/// proxmox-time gives up after this many steps (`compute_next_event`: "cancel after 1000 loops").
const PROXMOX_STEPS: usize = 1001;

/// The first firing strictly after `t` (UTC, whole seconds).
pub(crate) fn first_after(ev: &Event, t: OffsetDateTime) -> Option<OffsetDateTime> {
    // Firings are whole seconds, so the first candidate is the second after the one `t` is in
    // (proxmox-time does the same with `last + 1` on epoch seconds).
    let start = OffsetDateTime::from_unix_timestamp(t.unix_timestamp().checked_add(1)?).ok()?;
    let mut date = start.date();
    loop {
        date = first_date_from(ev, date)?;
        let from = if date == start.date() { (start.hour(), start.minute(), start.second()) } else { (0, 0, 0) };
        if let Some((h, m, s)) = first_time_from(ev, from) {
            let time = Time::from_hms(h, m, s).ok()?;
            return Some(PrimitiveDateTime::new(date, time).assume_utc());
        }
        // Only the start day can run out of times; any later day has its earliest one.
        date = date.next_day()?;
    }
}

/// The first day on or after `from` that the year, month, day and weekday parts allow.
fn first_date_from(ev: &Event, from: Date) -> Option<Date> {
    let (mut y, mut m, mut d) = (from.year(), u8::from(from.month()), from.day());
    while y <= LAST_YEAR {
        if !ev.year_holds(y) {
            // Skip whole years at once: a year-bound event never matches again after its last year.
            let after = u32::try_from(y + 1).unwrap_or(0);
            y = (after..=LAST_YEAR as u32).find(|&v| ev.year.contains(v))? as i32;
            (m, d) = (1, 1);
            continue;
        }
        if !ev.month.contains(m.into()) {
            match ev.month.first_from(u32::from(m) + 1, 12) {
                Some(n) => (m, d) = (n as u8, 1),
                None => (y, m, d) = (y + 1, 1, 1),
            }
            continue;
        }
        let month = Month::try_from(m).ok()?;
        let len = time::util::days_in_month(month, y);
        for day in d..=len {
            let date = Date::from_calendar_date(y, month, day).ok()?;
            if ev.day.contains(day.into()) && ev.weekdays.contains(date.weekday().number_days_from_monday()) {
                return Some(date);
            }
        }
        (y, m, d) = if m == 12 { (y + 1, 1, 1) } else { (y, m + 1, 1) };
    }
    None
}

/// The earliest time of day at or after `from` that the hour, minute and second parts allow.
fn first_time_from(ev: &Event, (h0, m0, s0): (u8, u8, u8)) -> Option<(u8, u8, u8)> {
    for h in (u32::from(h0)..=23).filter(|&h| ev.hour.contains(h)) {
        let m_from = if h == u32::from(h0) { u32::from(m0) } else { 0 };
        for m in (m_from..=59).filter(|&m| ev.minute.contains(m)) {
            let s_from = if h == u32::from(h0) && m == u32::from(m0) { u32::from(s0) } else { 0 };
            if let Some(s) = ev.second.first_from(s_from, 59) {
                return Some((h as u8, m as u8, s as u8));
            }
        }
    }
    None
}

/// proxmox-time's search, step for step (proxmox/proxmox-rs, branch master,
/// `proxmox-time/src/calendar_event.rs`, `CalendarEvent::compute_next_event`, with `TmEditor`
/// from `tm_editor.rs` and `DateTimeValue::find_next` from `date_time_value.rs`), in UTC: check
/// the fields from the year down; at the first that does not hold, jump to its next value
/// (resetting the smaller fields) and start over. The jump may land past the field's end, which
/// mktime-style normalisation carries into the next period; that is where it can skip a firing.
pub(crate) fn proxmox_after(ev: &Event, t: OffsetDateTime) -> Option<OffsetDateTime> {
    let first = OffsetDateTime::from_unix_timestamp(t.unix_timestamp().checked_add(1)?).ok()?;
    let mut c = PrimitiveDateTime::new(first.date(), first.time());
    for _ in 0..PROXMOX_STEPS {
        let (y, m, d) = (c.year(), u32::from(u8::from(c.month())), u32::from(c.day()));
        if !ev.year.is_any() {
            // proxmox-time fails on a year it cannot make unsigned; there is none from 1970 on.
            let year = u32::try_from(y).ok()?;
            if !ev.year.contains(year) {
                c = year_start(ev.year.proxmox_next(year)?.try_into().ok()?)?;
                continue;
            }
        }
        if !ev.month.contains(m) {
            c = match ev.month.proxmox_next(m) {
                Some(n) => add_months(c, n - m)?,
                None => year_start(y + 1)?,
            };
            continue;
        }
        if !ev.day.contains(d) {
            c = match ev.day.proxmox_next(d) {
                Some(n) => day_start(c.date(), i64::from(n - d))?,
                None => add_months(c, 1)?,
            };
            continue;
        }
        if !ev.weekdays.is_any() {
            let wd = c.weekday().number_days_from_monday();
            if !ev.weekdays.contains(wd) {
                // The next allowed day later this week, else Monday of the next.
                let n = (wd + 1..7).find(|&n| ev.weekdays.contains(n)).unwrap_or(7);
                c = day_start(c.date(), i64::from(n - wd))?;
                continue;
            }
        }
        let (h, min, s) = (u32::from(c.hour()), u32::from(c.minute()), u32::from(c.second()));
        if !ev.hour.contains(h) {
            c = match ev.hour.proxmox_next(h) {
                Some(n) => offset_from(c.date(), i64::from(n) * 3600)?,
                None => day_start(c.date(), 1)?,
            };
            continue;
        }
        let hour_start = i64::from(h) * 3600;
        if !ev.minute.contains(min) {
            c = match ev.minute.proxmox_next(min) {
                Some(n) => offset_from(c.date(), hour_start + i64::from(n) * 60)?,
                None => offset_from(c.date(), hour_start + 3600)?,
            };
            continue;
        }
        let minute_start = hour_start + i64::from(min) * 60;
        if !ev.second.contains(s) {
            c = match ev.second.proxmox_next(s) {
                Some(n) => offset_from(c.date(), minute_start + i64::from(n))?,
                None => offset_from(c.date(), minute_start + 60)?,
            };
            continue;
        }
        return Some(c.assume_offset(UtcOffset::UTC));
    }
    None
}

fn year_start(y: i32) -> Option<PrimitiveDateTime> {
    Some(Date::from_calendar_date(y, Month::January, 1).ok()?.midnight())
}

/// The first of the month `k` months after `c`'s (`TmEditor::add_months`).
fn add_months(c: PrimitiveDateTime, k: u32) -> Option<PrimitiveDateTime> {
    let idx = i64::from(c.year()) * 12 + i64::from(u8::from(c.month())) - 1 + i64::from(k);
    let y = i32::try_from(idx.div_euclid(12)).ok()?;
    let m = Month::try_from(u8::try_from(idx.rem_euclid(12) + 1).ok()?).ok()?;
    Some(Date::from_calendar_date(y, m, 1).ok()?.midnight())
}

/// Midnight `days` days after `date` (`TmEditor::add_days`).
fn day_start(date: Date, days: i64) -> Option<PrimitiveDateTime> {
    Some(date.checked_add(Duration::days(days))?.midnight())
}

/// `secs` seconds after `date`'s midnight, carrying into later days: what `TmEditor::set_time`
/// and friends get from `timegm` when handed an hour 24 or a minute 63.
fn offset_from(date: Date, secs: i64) -> Option<PrimitiveDateTime> {
    date.midnight().checked_add(Duration::seconds(secs))
}
