//! The read-only configuration user space patches in before load.

use tcpwatch_common::config::ProgramConfig;

/// Set by user space with `EbpfLoader::set_global` before load. Zero here.
#[unsafe(no_mangle)]
pub static TCPWATCH_CONFIG: ProgramConfig = {
    // SAFETY: ProgramConfig is plain integers; all-zero is a valid value.
    unsafe { core::mem::zeroed() }
};

/// Reads one field of [`TCPWATCH_CONFIG`], e.g. `config!(kernel.skc_state)`.
///
/// The read is volatile so the compiler cannot fold the zero initialiser: the real
/// value is written into the object by user space before the program is loaded.
macro_rules! config {
    ($($path:tt)+) => {
        // SAFETY: a field of a valid, aligned static; volatile only to defeat
        // constant folding of the placeholder initialiser.
        unsafe { ::core::ptr::read_volatile(&raw const $crate::config::TCPWATCH_CONFIG.$($path)+) }
    };
}
pub(crate) use config;
