//! Ring-buffer records: any bytes through the decoder (size, kind and version
//! checks) and, when accepted, through the conversion to the public record,
//! its JSON and text forms. Nothing may panic.
//!
//! Each input is tried twice: as received, and as the body of a record whose
//! header is valid for this build (kind from the first byte, this ABI version,
//! the record's size). The second makes every execution reach the conversion
//! whatever the record layout is, so the seeds do not go stale when the ABI
//! changes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tcpwatch::{
    events::{clock::Clock, convert::Converter, decode::decode},
    probes::{kernel_enums::KernelNames, tracefs::TpFormat},
    sinks::terminal,
};
use tcpwatch_common::{ABI_VERSION, event::TcpEvent};

/// State and reason names as a kernel's tracepoint formats give them.
fn converter() -> &'static Converter {
    static CONVERTER: OnceLock<Converter> = OnceLock::new();
    CONVERTER.get_or_init(|| {
        let states = TpFormat::parse(
            "format:\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\nprint fmt: \"x\", __print_symbolic(REC->oldstate, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 3, \"TCP_SYN_RECV\" }, { 4, \"TCP_FIN_WAIT1\" }, { 5, \"TCP_FIN_WAIT2\" }, { 6, \"TCP_TIME_WAIT\" }, { 7, \"TCP_CLOSE\" }, { 8, \"TCP_CLOSE_WAIT\" }, { 9, \"TCP_LAST_ACK\" }, { 10, \"TCP_LISTEN\" }, { 11, \"TCP_CLOSING\" }, { 12, \"TCP_NEW_SYN_RECV\" })\n",
        )
        .expect("state format");
        let reasons = TpFormat::parse(
            "format:\n\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\nprint fmt: \"r\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" })\n",
        )
        .expect("reason format");
        let names = KernelNames::resolve(None, Some(&states), Some(&reasons)).expect("names");
        Converter::new(names, Clock::sample())
    })
}

/// Decodes `data` and, if it is accepted, converts and renders it.
fn check(data: &[u8]) {
    if let Ok(raw) = decode(data) {
        let record = converter().convert(&raw);
        let _ = serde_json::to_string(&record);
        let _ = terminal::line(&record, 0);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let size = size_of::<TcpEvent>();
    let mut record = vec![0u8; size];
    // Kinds 0..=7: the known ones and a few unknown.
    record[0] = kind % 8;
    record[1] = ABI_VERSION;
    record[2..4].copy_from_slice(&u16::try_from(size).unwrap_or(u16::MAX).to_le_bytes());
    let n = body.len().min(size - 4);
    record[4..4 + n].copy_from_slice(&body[..n]);
    check(&record);
});
