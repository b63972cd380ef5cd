//! `tcpwatch explain --from`: any bytes as a recording, through the JSON Lines
//! reader, the explanation engine and both output formats. Bad input must end
//! in an error (`InvalidData`), never a panic.
#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use tcpwatch::{
    cmd::explain::{Replay, replay},
    explain::{engine::Engine, thresholds::Thresholds},
    sinks::output::{Format, Output},
};

fuzz_target!(|data: &[u8]| {
    // The output format from the input's length, so both are exercised.
    let format = if data.len() % 2 == 0 {
        Format::Json
    } else {
        Format::Text
    };
    let mut engine = Engine::new(Thresholds::default());
    let mut output = Output::new(format, 0, io::sink());
    let mut stats = Replay::default();
    if replay(data, &mut engine, &mut output, &mut stats, "fuzz").is_ok() {
        for finding in engine.finish() {
            let _ = output.finding(&finding);
        }
        let _ = engine.summary.render();
        let _ = output.flush();
    }
});
