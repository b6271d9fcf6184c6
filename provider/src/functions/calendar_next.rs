//! `provider::edge::calendar_next(event, from)`: when a PVE/PBS job with calendar event `event`
//! runs next after `from`, as an RFC 3339 timestamp in UTC.
//!
//! The event goes through `edge-calendar`, the parser `edge_pbs_job` validates `schedule` with,
//! so a string this function takes is one the resource takes, and the other way round. The time
//! is what the host's scheduler computes (proxmox-time's `compute_next_event`, which PVE reaches
//! through pve-rs and PBS calls directly), not the mathematically first firing: the two differ
//! only where proxmox-time's search steps past a firing (see `Event::proxmox_next_after`), and
//! the run that happens is the one a user plans around.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::framework::function::{string_arg, Function, FunctionError, Parameter, Signature};
use crate::framework::value::{Type, Value};

pub struct CalendarNext;

const EVENT: usize = 0;
const FROM: usize = 1;

impl Function for CalendarNext {
    fn name(&self) -> &'static str {
        "calendar_next"
    }

    fn signature(&self) -> Signature {
        Signature {
            summary: "The next run time of a Proxmox calendar event",
            description: "Returns the first time after `from` at which a PVE/PBS job with schedule `event` \
                runs, as an RFC 3339 timestamp in UTC (e.g. `2025-01-06T02:00:00Z`). `event` is a Proxmox \
                calendar event (`mon..fri 02:00`, `*-*-01 00:00`, `daily`), parsed exactly as \
                `edge_pbs_job` parses `schedule`. Times are UTC, as on a host whose time zone is UTC or \
                for an event ending in ` UTC`.",
            parameters: vec![
                Parameter {
                    name: "event",
                    ty: Type::String,
                    description: "A Proxmox calendar event, e.g. `mon..fri 02:00`.",
                    allow_null: false,
                },
                Parameter {
                    name: "from",
                    ty: Type::String,
                    description: "An RFC 3339 timestamp, e.g. `2025-01-31T02:00:00Z` or `timestamp()`; \
                        the result is strictly after it.",
                    allow_null: false,
                },
            ],
            returns: Type::String,
        }
    }

    fn call(&self, args: &[Value]) -> Result<Value, FunctionError> {
        let text = string_arg(args, EVENT, "event")?;
        let from_text = string_arg(args, FROM, "from")?;
        let event = edge_calendar::Event::parse(&text)
            .map_err(|e| FunctionError::at(EVENT, format!("{text:?} is not a Proxmox calendar event: {e}")))?;
        let from = OffsetDateTime::parse(&from_text, &Rfc3339).map_err(|e| {
            FunctionError::at(
                FROM,
                format!("{from_text:?} is not an RFC 3339 timestamp such as 2025-01-31T02:00:00Z: {e}"),
            )
        })?;
        let next = event.proxmox_next_after(from).ok_or_else(|| {
            FunctionError::at(
                EVENT,
                format!(
                    "{text:?} never runs after {from_text}: it names no date from then on (a past year, \
                     or a day its month lacks such as 02-30)"
                ),
            )
        })?;
        let out = next
            .to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| FunctionError { text: format!("cannot format {next}: {e}"), argument: None })?;
        Ok(Value::String(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(event: &str, from: &str) -> Result<String, FunctionError> {
        CalendarNext
            .call(&[Value::str(event), Value::str(from)])
            .map(|v| v.as_str().map(str::to_string).unwrap_or_default())
    }

    #[test]
    fn next_runs() {
        // 2025-01-03 is a Friday.
        assert_eq!(call("mon..fri 02:00", "2025-01-03T02:00:00Z").as_deref(), Ok("2025-01-06T02:00:00Z"));
        assert_eq!(call("*-*-01 00:00", "2025-01-15T10:00:00+01:00").as_deref(), Ok("2025-02-01T00:00:00Z"));
        // An offset is honoured: 03:30+02:00 is 01:30Z, before the 02:00 run.
        assert_eq!(call("02:00", "2025-01-03T03:30:00+02:00").as_deref(), Ok("2025-01-03T02:00:00Z"));
    }

    #[test]
    fn errors_name_the_argument() {
        let e = call("mon..fry 02:00", "2025-01-03T02:00:00Z").unwrap_err();
        assert_eq!(e.argument, Some(EVENT));
        assert!(e.text.contains("\"fry\""), "{}", e.text);
        let e = call("daily", "yesterday").unwrap_err();
        assert_eq!(e.argument, Some(FROM));
        assert!(e.text.contains("RFC 3339"), "{}", e.text);
        let e = call("2020-01-01", "2025-01-03T02:00:00Z").unwrap_err();
        assert_eq!(e.argument, Some(EVENT));
        assert!(e.text.contains("never runs after"), "{}", e.text);
        let e = CalendarNext.call(&[Value::Null, Value::str("x")]).unwrap_err();
        assert_eq!(e.argument, Some(EVENT));
    }
}
