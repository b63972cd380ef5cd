//! The libtest-mimic harness of the kernel test binaries: each trial on a
//! fresh thread (which then enters a network namespace of its own), and the
//! root check.

use libtest_mimic::{Arguments, Failed, Trial};

/// A trial whose body runs on a fresh thread, so that the network namespace it
/// enters dies with the thread and its child processes.
pub fn trial(name: &'static str, body: fn()) -> Trial {
    Trial::test(name, move || {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .map_err(|e| Failed::from(format!("spawn: {e}")))?
            .join()
            .map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "test panicked".into())
                    .into()
            })
    })
}

/// Runs the trials. They need root (BPF, network namespaces): without it they
/// fail with one line, or are reported as ignored when
/// `TCPWATCH_SKIP_KERNEL_TESTS` is set.
pub fn run(mut trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    if !nix::unistd::geteuid().is_root() {
        if std::env::var_os("TCPWATCH_SKIP_KERNEL_TESTS").is_some() {
            for t in &mut trials {
                *t = Trial::test(t.name().to_owned(), || Ok(())).with_ignored_flag(true);
            }
        } else {
            eprintln!(
                "kernel tests need root (BPF, network namespaces); run `sudo cargo test` or set TCPWATCH_SKIP_KERNEL_TESTS=1 to skip them"
            );
            std::process::exit(1);
        }
    }
    libtest_mimic::run(&args, trials).exit()
}
