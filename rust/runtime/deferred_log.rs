//! Log records made while a thread holds the engine lock are kept until it
//! lets go, then handed to the real logger in order.
//!
//! Why: a logger may block (the bindings' logger waits for Python's GIL) or
//! call back into the stack (a `logging.Handler` that sends its records
//! through a stack socket). Under the engine lock the first stalls every
//! other caller for as long as the logger waits, and the second deadlocks the
//! thread on a lock it already holds. Out of the lock, both are harmless.

use log::{Level, Log, Metadata, Record};
use std::cell::{Cell, RefCell};

/// Records kept per hold at most; past it they are counted, not kept, so
/// that a hold that logs without end cannot grow memory without end.
const KEPT_PER_HOLD: usize = 1024;

thread_local! {
    /// How many engine holds this thread has (0 or 1: the lock is not
    /// re-entrant, but a hold handed over by `wait_on` overlaps its
    /// successor briefly).
    static HOLDS: Cell<u32> = const { Cell::new(0) };
    static KEPT: RefCell<Kept> = const { RefCell::new(Kept { records: Vec::new(), dropped: 0 }) };
}

struct Kept {
    records: Vec<OwnedRecord>,
    dropped: u64,
}

/// What a `Record` says, owned so that it outlives the call that made it.
struct OwnedRecord {
    level: Level,
    target: String,
    message: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

impl OwnedRecord {
    fn of(record: &Record<'_>) -> Self {
        OwnedRecord {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
        }
    }

    fn emit(&self, to: &dyn Log) {
        to.log(
            &Record::builder()
                .level(self.level)
                .target(&self.target)
                .args(format_args!("{}", self.message))
                .module_path(self.module_path.as_deref())
                .file(self.file.as_deref())
                .line(self.line)
                .build(),
        );
    }
}

/// Wraps the logger the program installs (see the module's doc).
pub struct DeferredLog<L> {
    inner: L,
}

impl<L: Log> DeferredLog<L> {
    pub fn new(inner: L) -> Self {
        DeferredLog { inner }
    }
}

impl<L: Log> Log for DeferredLog<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if HOLDS.with(Cell::get) == 0 {
            self.inner.log(record);
            return;
        }
        KEPT.with_borrow_mut(|kept| {
            if kept.records.len() < KEPT_PER_HOLD {
                kept.records.push(OwnedRecord::of(record));
            } else {
                kept.dropped += 1;
            }
        });
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// This thread took the engine lock.
pub(super) fn hold_begins() {
    HOLDS.with(|holds| holds.set(holds.get() + 1));
}

/// This thread let go of the engine lock: once it holds it no more, the
/// records kept meanwhile go to the logger installed.
pub(super) fn hold_ends() {
    hold_ends_to(log::logger());
}

fn hold_ends_to(to: &dyn Log) {
    let left = HOLDS.with(|holds| {
        let left = holds.get().saturating_sub(1);
        holds.set(left);
        left
    });
    if left == 0 {
        emit_kept(to);
    }
}

fn emit_kept(to: &dyn Log) {
    // Taken out first: the logger may log again (through a handler that
    // calls the stack), and those records find an empty, unborrowed store.
    let Kept { records, dropped } = KEPT.with_borrow_mut(|kept| Kept {
        records: std::mem::take(&mut kept.records),
        dropped: std::mem::take(&mut kept.dropped),
    });
    for record in &records {
        record.emit(to);
    }
    if dropped > 0 {
        log::warn!("{dropped} log records made under one hold of the engine were dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A logger that remembers what reached it, and whether this thread
    /// held the engine when it did.
    struct Remembers(Mutex<Vec<(String, u32)>>);

    impl Log for Remembers {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.level() <= Level::Debug
        }
        fn log(&self, record: &Record<'_>) {
            let holds = HOLDS.with(Cell::get);
            self.0
                .lock()
                .unwrap()
                .push((record.args().to_string(), holds));
        }
        fn flush(&self) {}
    }

    fn log_to(logger: &dyn Log, level: Level, message: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .target("mipfast::test")
                .args(format_args!("{message}"))
                .build(),
        );
    }

    #[test]
    fn records_made_under_a_hold_reach_the_logger_after_it_in_order() {
        let logger = DeferredLog::new(Remembers(Mutex::new(Vec::new())));
        log_to(&logger, Level::Info, "before");
        hold_begins();
        log_to(&logger, Level::Info, "first");
        hold_begins(); // `wait_on`'s successor, before its predecessor ends
        log_to(&logger, Level::Debug, "second");
        hold_ends_to(&logger);
        log_to(&logger, Level::Trace, "filtered out");
        assert_eq!(
            logger.inner.0.lock().unwrap().len(),
            1,
            "nothing passes while a hold lasts"
        );
        hold_ends_to(&logger);
        let seen = logger.inner.0.lock().unwrap().clone();
        let expected = [("before", 0), ("first", 0), ("second", 0)];
        assert_eq!(
            seen,
            expected.map(|(m, h)| (m.to_owned(), h)).to_vec(),
            "in order, none while held, the filtered one not kept"
        );
    }

    #[test]
    fn a_hold_that_logs_without_end_keeps_a_bounded_number() {
        let logger = DeferredLog::new(Remembers(Mutex::new(Vec::new())));
        hold_begins();
        for n in 0..KEPT_PER_HOLD + 10 {
            log_to(&logger, Level::Info, &n.to_string());
        }
        let dropped = KEPT.with_borrow(|kept| (kept.records.len(), kept.dropped));
        assert_eq!(dropped, (KEPT_PER_HOLD, 10));
        hold_ends_to(&logger);
        assert_eq!(logger.inner.0.lock().unwrap().len(), KEPT_PER_HOLD);
        assert_eq!(
            KEPT.with_borrow(|kept| (kept.records.len(), kept.dropped)),
            (0, 0)
        );
    }
}
