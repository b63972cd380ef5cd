//! The keys of `top`: a thread reads the terminal's input and reports a quit
//! key (q, Esc, Ctrl-C; in raw mode Ctrl-C is a key, not SIGINT). When the
//! input ends or fails (the terminal went away) the thread ends, and with it
//! the sender, which the session also takes as a quit.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::UnboundedSender;

/// How long the reader waits for input before checking whether to stop: the
/// longest a quit waits for the thread.
const POLL: Duration = Duration::from_millis(100);

/// The running key reader; dropping it stops the thread.
pub struct Keys {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Keys {
    /// Starts reading keys; a quit key sends on `quit`.
    pub fn spawn(quit: UnboundedSender<()>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tcpwatch-keys".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    match event::poll(POLL) {
                        Ok(false) => {}
                        Ok(true) => match event::read() {
                            Ok(event) if is_quit(&event) => {
                                let _ = quit.send(());
                                return;
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        },
                        Err(_) => return,
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// q, Q, Esc and Ctrl-C quit; other keys, key releases, mouse, paste and
/// resize events do not.
pub fn is_quit(event: &Event) -> bool {
    let Event::Key(KeyEvent {
        code,
        modifiers,
        kind,
        ..
    }) = event
    else {
        return false;
    };
    if *kind == KeyEventKind::Release {
        return false;
    }
    match code {
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn quit_keys() {
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('Q'), KeyModifiers::SHIFT)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        assert!(!is_quit(&Event::Resize(80, 24)));
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(!is_quit(&Event::Key(release)));
    }
}
