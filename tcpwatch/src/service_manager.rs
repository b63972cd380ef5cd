//! Telling the service manager (systemd, `Type=notify`) how the daemon is
//! doing: READY once every program is attached and the endpoints listen,
//! RELOADING and READY around a reload, STOPPING at SIGTERM, a STATUS line, and
//! watchdog keep-alives when the unit sets `WatchdogSec=`. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify: {e}");
    }
}

/// Ready, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reloading the configuration (READY follows).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Starts the watchdog keep-alives when systemd asked for them. They run on the
/// daemon's (single-threaded) runtime, so a stuck event loop stops them and
/// systemd restarts the service.
pub fn start_watchdog() -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
