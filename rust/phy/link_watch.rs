//! Watching the link under the live device: an interface taken down and up
//! again, or deleted and made again under its name.
//!
//! Linux tells a packet socket that its interface went down by setting the
//! socket's pending error to ENETDOWN (`packet_notifier` in
//! net/packet/af_packet.c). `poll()` reports the socket ready (POLLERR) until
//! someone takes that error. A reader of a mapped ring makes no system call
//! that would, so whoever slept on the socket spun on it for good, link up
//! again or not. When the interface is deleted the socket is also unbound,
//! for good: frames of an interface made again under the same name (a USB
//! adapter plugged back in, a veth pair re-created) reach it only once it
//! is bound to the new one.
//!
//! [`LinkWatch`] is the policy, over simulated time; [`LinkProbe`] is what
//! it asks of the OS (`packet_path.rs`). The stack acts on what it sees
//! (`Stack::take_link`): neighbors asked for again, a DHCP lease verified,
//! the MTU followed.

use super::{Link, LinkState};
use crate::time::{Duration, Instant};
use std::io;

/// What the watch asks of the device's sockets and of the OS.
pub trait LinkProbe {
    /// The receiving socket's pending error, taken (reading it clears it).
    fn take_error(&mut self) -> Option<io::Error>;
    /// The index of the interface that has the device's name now.
    fn index_now(&mut self) -> Option<u32>;
    /// Whether that interface is up (`ip link set … up`).
    fn is_up(&mut self) -> bool;
    /// Binds the device's sockets to interface `index`.
    fn bind(&mut self, index: u32) -> io::Result<()>;
    /// The interface's MTU now.
    fn mtu(&mut self) -> Option<usize>;
}

/// While the link is up, how often at most a receive that found nothing
/// asks the socket for an error. A POLLERR wakes a sleeper, whose next
/// receive takes the error at once unless it asked within this time: that
/// bounds how long it may spin, and costs a system call per this time at
/// most on a busy idle path.
const UP_LOOK: Duration = Duration::from_millis(10);
/// How often a link that is down or gone is looked at: the device asks to
/// be woken for it (`Device::poll_at`), so a stack nobody uses notices
/// that its interface came back.
const AWAY_LOOK: Duration = Duration::from_millis(200);

/// Whether `error` means the interface is down or gone: what the socket
/// says (ENETDOWN) or what a send or receive on an unbound one fails with.
pub fn is_link_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

/// One device's view of its link: up, down or gone, how many times it came
/// back, and its MTU; looked at when receives find nothing.
pub struct LinkWatch {
    /// The interface's name, for what is logged.
    name: String,
    /// The index the sockets are bound to.
    index: u32,
    state: LinkState,
    next_look: Instant,
    /// How many times the link came back.
    returns: u64,
    /// The interface's MTU as last looked at: an MTU changed by hand
    /// (`ip link set … mtu`) tells a packet socket nothing, so each look asks.
    mtu: usize,
}

impl LinkWatch {
    /// A link that is up on interface `index`, named `name`, of `mtu`.
    pub fn new(name: &str, index: u32, mtu: usize, now: Instant) -> Self {
        LinkWatch {
            name: name.to_string(),
            index,
            state: LinkState::Up,
            next_look: now,
            returns: 0,
            mtu,
        }
    }

    /// The link as last seen, and how many times it came back.
    pub fn link(&self) -> Link {
        Link {
            state: self.state,
            returns: self.returns,
            mtu: self.mtu,
        }
    }

    /// When the device wants to look at a link that is away.
    pub fn poll_at(&self) -> Option<Instant> {
        (self.state != LinkState::Up).then_some(self.next_look)
    }

    /// A receive found no frame, or failed with `error` (a link error, which
    /// the socket gave instead of frames). Looks at the link when a look is
    /// due, or at once for `error`.
    pub fn idle(&mut self, now: Instant, error: Option<io::Error>, probe: &mut impl LinkProbe) {
        if error.is_none() && now < self.next_look {
            return;
        }
        if self.state == LinkState::Up {
            self.next_look = now + UP_LOOK;
            match error.or_else(|| probe.take_error()) {
                Some(e) if is_link_error(&e) => self.went_down(now, probe),
                Some(e) => log::debug!("{}: socket error {e}", self.name),
                None => self.look_at_mtu(probe),
            }
        } else {
            self.next_look = now + AWAY_LOOK;
            let _ = probe.take_error(); // set again by each event while away
            self.look_again(probe);
        }
    }

    fn went_down(&mut self, now: Instant, probe: &mut impl LinkProbe) {
        self.next_look = now + AWAY_LOOK;
        if probe.index_now() == Some(self.index) {
            self.state = LinkState::Down;
            log::warn!(
                "{}: the link is down; connections keep their state, and frames wait for it",
                self.name
            );
        } else {
            self.gone();
            self.look_again(probe); // it may be back already
        }
    }

    fn look_at_mtu(&mut self, probe: &mut impl LinkProbe) {
        if let Some(mtu) = probe.mtu().filter(|&m| m != self.mtu) {
            log::info!("{}: the interface's MTU is {mtu}", self.name);
            self.mtu = mtu;
        }
    }

    fn came_up(&mut self) {
        self.state = LinkState::Up;
        self.returns += 1;
        log::info!("{}: the link is up", self.name);
    }

    fn gone(&mut self) {
        self.state = LinkState::Gone;
        log::warn!(
            "{}: the interface is gone; waiting for an interface of that name",
            self.name
        );
    }

    fn look_again(&mut self, probe: &mut impl LinkProbe) {
        let index = probe.index_now();
        if self.state == LinkState::Down {
            if index != Some(self.index) {
                self.gone();
            } else if probe.is_up() {
                self.look_at_mtu(probe);
                self.came_up();
                return;
            } else {
                return;
            }
        }
        let Some(index) = index else { return };
        match probe.bind(index) {
            Ok(()) => {
                self.index = index;
                self.state = LinkState::Down;
                log::info!(
                    "{}: an interface of that name is back (index {index})",
                    self.name
                );
                self.look_at_mtu(probe);
                if probe.is_up() {
                    self.came_up();
                }
            }
            Err(e) => log::debug!("{}: cannot bind to index {index} yet: {e}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS as a test sets it; records what the watch did.
    #[derive(Default)]
    struct FakeOs {
        mtu: usize,
        error: Option<i32>,
        index: Option<u32>,
        up: bool,
        bind_fails: bool,
        bound: Vec<u32>,
        errors_taken: usize,
    }

    impl LinkProbe for FakeOs {
        fn take_error(&mut self) -> Option<io::Error> {
            self.errors_taken += 1;
            self.error.take().map(io::Error::from_raw_os_error)
        }
        fn index_now(&mut self) -> Option<u32> {
            self.index
        }
        fn is_up(&mut self) -> bool {
            self.up
        }
        fn bind(&mut self, index: u32) -> io::Result<()> {
            if self.bind_fails {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            self.bound.push(index);
            Ok(())
        }
        fn mtu(&mut self) -> Option<usize> {
            Some(self.mtu)
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms as i64)
    }

    /// `n` looks at an away link after time 0.
    fn looks(n: u64) -> Instant {
        at(n * AWAY_LOOK.total_millis())
    }

    fn up_on(index: u32) -> FakeOs {
        FakeOs {
            index: Some(index),
            up: true,
            mtu: 1500,
            ..FakeOs::default()
        }
    }

    #[test]
    fn an_idle_receive_takes_the_socket_error_at_most_every_up_look() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        watch.idle(at(0), None, &mut os);
        watch.idle(at(5), None, &mut os);
        assert_eq!(os.errors_taken, 1, "a look within UP_LOOK asks nothing");
        watch.idle(at(10), None, &mut os);
        assert_eq!(os.errors_taken, 2);
        assert_eq!(watch.link().state, LinkState::Up);
        assert_eq!(watch.poll_at(), None, "an up link asks for no wake-up");
    }

    #[test]
    fn a_link_taken_down_and_up_again() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.error = Some(libc::ENETDOWN);
        os.up = false;
        watch.idle(at(20), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Down);
        assert_eq!(
            os.error, None,
            "the error is taken, so poll() stops reporting it"
        );
        assert_eq!(watch.poll_at(), Some(at(20) + AWAY_LOOK));
        watch.idle(at(20) + AWAY_LOOK, None, &mut os);
        assert_eq!(watch.link().state, LinkState::Down);
        os.up = true;
        watch.idle(at(20) + AWAY_LOOK + AWAY_LOOK, None, &mut os);
        assert_eq!(
            (watch.link().state, watch.link().returns),
            (LinkState::Up, 1)
        );
        assert!(
            os.bound.is_empty(),
            "the kernel binds again on its own when it comes up"
        );
    }

    #[test]
    fn an_error_from_a_receive_counts_at_once_and_only_a_look_says_up() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.up = false;
        let down = io::Error::from_raw_os_error(libc::ENETDOWN);
        watch.idle(at(1), Some(down), &mut os);
        assert_eq!(
            watch.link().state,
            LinkState::Down,
            "not waiting for UP_LOOK"
        );
        // Frames queued before it went down may still be read: they say
        // nothing, only a look at the interface does.
        os.up = true;
        watch.idle(at(2), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Down);
        watch.idle(at(1) + AWAY_LOOK, None, &mut os);
        assert_eq!(
            (watch.link().state, watch.link().returns),
            (LinkState::Up, 1)
        );
    }

    #[test]
    fn a_deleted_interface_is_bound_again_when_its_name_returns() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.error = Some(libc::ENETDOWN);
        os.index = None;
        watch.idle(at(0), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Gone);
        watch.idle(at(100), None, &mut os);
        assert_eq!(os.errors_taken, 1, "not looked at before AWAY_LOOK");
        os.index = Some(7);
        os.bind_fails = true;
        watch.idle(looks(1), None, &mut os);
        assert_eq!(
            watch.link().state,
            LinkState::Gone,
            "a bind that fails is tried again"
        );
        os.bind_fails = false;
        watch.idle(looks(2), None, &mut os);
        assert_eq!(os.bound, vec![7]);
        assert_eq!(
            (watch.link().state, watch.link().returns),
            (LinkState::Up, 1)
        );
        // The new index is the one watched from now on.
        os.error = Some(libc::ENETDOWN);
        os.up = false;
        watch.idle(looks(3), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Down);
    }

    #[test]
    fn an_interface_deleted_while_down_or_made_again_at_once() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.error = Some(libc::ENETDOWN);
        os.up = false;
        watch.idle(at(0), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Down);
        // Deleted and made again (down) between two looks: another index.
        os.index = Some(4);
        watch.idle(looks(1), None, &mut os);
        assert_eq!(
            (watch.link().state, os.bound.as_slice()),
            (LinkState::Down, &[4][..])
        );
        os.up = true;
        watch.idle(looks(2), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Up);
        // Made again before the first look: bound at once.
        os.error = Some(libc::ENETDOWN);
        os.index = Some(5);
        watch.idle(looks(3), None, &mut os);
        assert_eq!(
            (watch.link().state, os.bound.as_slice()),
            (LinkState::Up, &[4, 5][..])
        );
        assert_eq!(watch.link().returns, 2);
    }

    #[test]
    fn an_mtu_changed_by_hand_shows_at_the_next_look() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.mtu = 1000;
        watch.idle(at(0), None, &mut os);
        assert_eq!(watch.link().mtu, 1000);
        // An interface made again comes with its own.
        os.error = Some(libc::ENETDOWN);
        os.index = Some(8);
        os.mtu = 9000;
        watch.idle(at(10), None, &mut os);
        assert_eq!(
            (watch.link().state, watch.link().mtu),
            (LinkState::Up, 9000)
        );
    }

    #[test]
    fn other_socket_errors_leave_the_link_up() {
        let mut os = up_on(3);
        let mut watch = LinkWatch::new("eth9", 3, 1500, at(0));
        os.error = Some(libc::ENOBUFS);
        watch.idle(at(0), None, &mut os);
        assert_eq!(watch.link().state, LinkState::Up);
        assert!(is_link_error(&io::Error::from_raw_os_error(libc::ENXIO)));
        assert!(!is_link_error(&io::Error::from_raw_os_error(libc::EAGAIN)));
    }
}
