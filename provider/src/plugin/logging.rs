//! Logs to stderr in hclog's JSON shape, which go-plugin parses so Terraform shows our lines at
//! their own level under `TF_LOG` / `TF_LOG_PROVIDER`. Nothing is written to stdout: stdout
//! carries only the handshake line.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The level from `TF_LOG_PROVIDER`, else `TF_LOG` (Terraform's names: TRACE…ERROR, OFF);
/// nothing at all when neither is set.
pub fn level_from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Level> {
    let v = env("TF_LOG_PROVIDER").or_else(|| env("TF_LOG"))?;
    match v.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => Some(Level::TRACE),
        "DEBUG" => Some(Level::DEBUG),
        "INFO" => Some(Level::INFO),
        "WARN" => Some(Level::WARN),
        "ERROR" => Some(Level::ERROR),
        _ => None,
    }
}

pub fn init() {
    let Some(level) = level_from_env(&|k| std::env::var(k).ok()) else { return };
    // Our own lines at the requested level; libraries (rustls, h2, hyper) only when they warn.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("edge_provider", level)
        .with_target("terraform_provider_edge", level)
        .with_default(Level::WARN);
    let _ = tracing_subscriber::registry().with(HclogJson.with_filter(filter)).try_init();
}

struct HclogJson;

#[derive(Default)]
struct Fields {
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.extra.insert(field.name().to_string(), format!("{value:?}").into());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.extra.insert(field.name().to_string(), value.into());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for HclogJson {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = match *event.metadata().level() {
            Level::TRACE => "trace",
            Level::DEBUG => "debug",
            Level::INFO => "info",
            Level::WARN => "warn",
            Level::ERROR => "error",
        };
        let mut obj = f.extra;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                obj.insert("span".into(), span.name().into());
            }
        }
        obj.insert("@level".into(), level.into());
        obj.insert("@message".into(), f.message.into());
        obj.insert("@module".into(), "provider.edge".into());
        obj.insert("@timestamp".into(), timestamp().into());
        let mut line = serde_json::Value::Object(obj).to_string();
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// hclog's timestamp layout, `2006-01-02T15:04:05.000000Z07:00`, in UTC.
fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, now.subsec_micros())
}
