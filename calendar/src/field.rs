//! One field of an event (year, month, day, hour, minute, second) and the weekday set.
//!
//! The value model is proxmox-time's `DateTimeValue` (proxmox/proxmox-rs, branch master,
//! `proxmox-time/src/date_time_value.rs`): a field is a list of items, each a single value, a
//! range, or a start with a repetition (optionally bounded); an empty list means "every value".

/// One comma-separated item of a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `n`
    Single(u32),
    /// `a..b`, both ends included.
    Range(u32, u32),
    /// `a/s` (no end: up to the field's natural end), `a..b/s`, or `*/s` (starting at the
    /// field's lowest value as proxmox-time does: 0 for years and times, 1 for months and days).
    Step { start: u32, step: u32, end: Option<u32> },
}

impl Item {
    /// Membership, as `DateTimeValue::contains` defines it. `step` is never 0: the grammar
    /// refuses it (proxmox-time would read `n/0` as plain `n`).
    fn contains(&self, v: u32) -> bool {
        match *self {
            Item::Single(n) => n == v,
            Item::Range(a, b) => a <= v && v <= b,
            Item::Step { start, step, end } => v >= start && (v - start) % step == 0 && end.is_none_or(|e| v <= e),
        }
    }

    /// The smallest value above `v` this item yields *without* clamping to the field's real end
    /// (hour 25, day 31 of February): that is what `DateTimeValue::find_next` returns, and
    /// `compute_next_event` then lets libc normalise the overflow into the next hour, day or
    /// month. Only [`crate::Event::proxmox_next_after`] uses it, to reproduce that.
    fn proxmox_next(&self, v: u32) -> Option<u32> {
        match *self {
            Item::Single(n) => (n > v).then_some(n),
            Item::Range(a, b) => {
                if v < a {
                    Some(a)
                } else {
                    let n = v.checked_add(1)?;
                    (n <= b).then_some(n)
                }
            }
            Item::Step { start, step, end } => {
                if v < start {
                    return Some(start);
                }
                // The next multiple of `step` past `v`, counted from `start`.
                let n = start.checked_add(((v - start) / step).checked_add(1)?.checked_mul(step)?)?;
                end.is_none_or(|e| n <= e).then_some(n)
            }
        }
    }
}

/// A field: the items of a comma-separated list; empty for `*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Field(pub(crate) Vec<Item>);

impl Field {
    /// `*`: every value.
    pub(crate) fn any() -> Self {
        Field(Vec::new())
    }

    pub(crate) fn single(v: u32) -> Self {
        Field(vec![Item::Single(v)])
    }

    pub(crate) fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn contains(&self, v: u32) -> bool {
        self.is_any() || self.0.iter().any(|i| i.contains(v))
    }

    /// The smallest value in `from..=last` the field holds. Fields are at most a few thousand
    /// values wide (years up to 9999), so a scan is plenty and obviously right.
    pub(crate) fn first_from(&self, from: u32, last: u32) -> Option<u32> {
        (from..=last).find(|&v| self.contains(v))
    }

    /// `DateTimeValue::find_next` over the list: the smallest [`Item::proxmox_next`].
    pub(crate) fn proxmox_next(&self, v: u32) -> Option<u32> {
        self.0.iter().filter_map(|i| i.proxmox_next(v)).min()
    }

    /// Whether some item is a repetition or reaches past `last`: the only items with which
    /// proxmox-time's search can step over a firing (see [`crate::Event::proxmox_next_after`]).
    #[cfg(test)]
    pub(crate) fn may_overshoot(&self, last: u32) -> bool {
        self.0.iter().any(|i| match *i {
            Item::Single(n) => n > last,
            Item::Range(_, b) => b > last,
            Item::Step { .. } => true,
        })
    }
}

/// Weekdays as a bit set, bit 0 Monday … bit 6 Sunday; empty for "every day" (proxmox-time's
/// `WeekDays` in `proxmox-time/src/week_days.rs` numbers them the same way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Weekdays(pub(crate) u8);

impl Weekdays {
    pub(crate) const ALL: u8 = 0x7f;

    /// `days_from_monday` is 0 for Monday … 6 for Sunday.
    pub(crate) fn contains(self, days_from_monday: u8) -> bool {
        self.0 == 0 || self.0 & (1 << days_from_monday) != 0
    }

    /// "Every day" written either way (no weekdays, or all seven): proxmox-time skips the
    /// weekday step of its search for both.
    pub(crate) fn is_any(self) -> bool {
        self.0 == 0 || self.0 == Self::ALL
    }
}
