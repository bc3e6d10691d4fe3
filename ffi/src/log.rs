//! The log hook: core's `tracing` events (sync rounds, failures, refusals,
//! the live channel), handed to the app's own logging (Logcat, Timber,
//! `os_log`…) through a [`LogSink`] it implements.
//!
//! A layer over `tracing`'s registry is installed once, the first time a sink
//! is set; the sink and its level live in a global that `set_log_sink`
//! replaces, so an app may change or remove its sink at any time.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Something failed that the app should know of.
    Error,
    /// Sync failed or a change was refused; the engine goes on.
    Warn,
    /// Milestones: a channel opened, background sync started.
    Info,
    /// Each round's figures.
    Debug,
    /// Everything.
    Trace,
}

impl From<&Level> for LogLevel {
    fn from(l: &Level) -> Self {
        match *l {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

/// Where the app wants the engine's log lines. Called on the thread that
/// logged (often a background thread); keep it quick and never call back
/// into the replica from it.
#[uniffi::export(foreign)]
pub trait LogSink: Send + Sync {
    /// One line: its level, where it came from (a Rust module path, e.g.
    /// `fieldsync_core::sync::run`) and the message with its fields.
    fn log(&self, level: LogLevel, target: String, message: String);
}

static SINK: RwLock<Option<(Arc<dyn LogSink>, LogLevel)>> = RwLock::new(None);
static INSTALL: Once = Once::new();

/// Route the engine's log lines at `max_level` and above to `sink` (none:
/// stop). Replaces the sink set before. Nothing is logged until it is called.
#[uniffi::export]
pub fn set_log_sink(sink: Option<Arc<dyn LogSink>>, max_level: LogLevel) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink.map(|s| (s, max_level));
    // If the app already installed a global subscriber of its own, it keeps it.
    INSTALL.call_once(|| {
        let _ = tracing_subscriber::registry().with(ToSink).try_init();
    });
}

struct ToSink;

impl<S: Subscriber> Layer<S> for ToSink {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = LogLevel::from(meta.level());
        let Some((sink, max)) = SINK.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        if level > max {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        sink.log(level, meta.target().to_owned(), line.finish());
    }
}

/// An event's message followed by its other fields as `key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn finish(self) -> String {
        if self.fields.is_empty() { self.message } else { format!("{}{}", self.message, self.fields) }
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Lines(Mutex<Vec<(LogLevel, String, String)>>);

    impl LogSink for Lines {
        fn log(&self, level: LogLevel, target: String, message: String) {
            self.0.lock().unwrap().push((level, target, message));
        }
    }

    #[test]
    fn the_sink_hears_events_at_its_level_and_is_replaced() {
        let lines = Arc::new(Lines(Mutex::new(Vec::new())));
        set_log_sink(Some(lines.clone()), LogLevel::Info);
        tracing::warn!(target: "fieldsync_ffi::log::tests", project = "p1", "sync failed: {}", "no route");
        tracing::debug!(target: "fieldsync_ffi::log::tests", "below the level");
        set_log_sink(None, LogLevel::Trace);
        tracing::error!(target: "fieldsync_ffi::log::tests", "after the sink was removed");
        // Other tests of this binary may log meanwhile: only this test's lines count.
        let seen: Vec<_> =
            lines.0.lock().unwrap().iter().filter(|l| l.1 == "fieldsync_ffi::log::tests").cloned().collect();
        assert_eq!(
            seen,
            [(LogLevel::Warn, "fieldsync_ffi::log::tests".to_owned(), "sync failed: no route project=p1".to_owned())]
        );
    }
}
