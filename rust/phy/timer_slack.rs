//! A thread's timer slack: how much later than asked the kernel may end its
//! timed sleeps, so that their expiries ride on an interrupt that comes
//! anyway (the scheduler tick) instead of raising one of their own. Linux
//! only (`PR_SET_TIMERSLACK`); elsewhere the sleeps keep their precision.

use std::time::Duration;

/// While alive, the calling thread's timed sleeps may end up to `slack`
/// late; the previous slack comes back on drop.
pub struct Widened {
    #[cfg(target_os = "linux")]
    before: libc::c_ulong,
}

impl Widened {
    #[cfg(target_os = "linux")]
    pub fn new(slack: Duration) -> Widened {
        // SAFETY: PR_GET_TIMERSLACK takes no pointers and returns the value.
        let before = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
        let nanos = slack.as_nanos().min(libc::c_ulong::MAX as u128) as libc::c_ulong;
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer; it fails only for
        // bad options, and a failure just leaves the slack as it was.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos) };
        Widened {
            before: before.max(0) as libc::c_ulong, // unknown: 0 restores the default
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new(_slack: Duration) -> Widened {
        Widened {}
    }
}

#[cfg(target_os = "linux")]
impl Drop for Widened {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, self.before) };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn current() -> i32 {
        // SAFETY: as in `Widened::new`.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) }
    }

    #[test]
    fn the_slack_is_widened_while_held_and_restored_after() {
        std::thread::spawn(|| {
            let before = current();
            {
                let _wide = Widened::new(Duration::from_millis(3));
                assert_eq!(current(), 3_000_000);
            }
            assert_eq!(current(), before);
        })
        .join()
        .unwrap();
    }
}
