//! The terminal `top` draws on: raw mode, the alternate screen and a hidden
//! cursor while it runs, and the terminal as it was on every way out: a
//! return, an error (the guard is dropped), a panic (the panic hook restores it
//! before the message is printed, so the message is readable).

use std::{
    io,
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
    },
};

use ratatui::crossterm::{cursor, execute, terminal};

/// Whether the terminal is in `top`'s modes (and needs restoring).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// The terminal in `top`'s modes until this is dropped.
pub struct Screen(());

impl Screen {
    /// Enters raw mode and the alternate screen and hides the cursor; on
    /// failure, what was already changed is undone.
    pub fn enter() -> io::Result<Self> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = terminal::enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide));
        match entered {
            Ok(()) => Ok(Self(())),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor, once (later
/// calls do nothing). Errors are ignored: the terminal may be gone (a
/// hang-up), and there is nothing better to do on the way out.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = terminal::disable_raw_mode();
    // Leaving the alternate screen comes last: it is what a terminal (or a
    // test) sees as the end of the view.
    let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
}
