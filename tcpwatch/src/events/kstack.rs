//! Kernel stacks of resets (`--kstack`): the stack id an event carries, read
//! from the `KSTACKS` stack-trace map and symbolised over /proc/kallsyms
//! (blazesym), into [`Frame`]s. Each distinct stack is symbolised once and
//! cached (the map never reuses an id for another stack: it does not evict).

use std::{collections::HashMap, sync::Arc};

use aya::maps::{MapData, StackTraceMap};
use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Kernel, Source},
};
use tcpwatch_common::{
    event::{TcpEvent, flags},
    limits,
};

use super::model::Frame;

/// Leading frames that belong to the tracing machinery, not to TCP: the
/// tracepoint or kprobe glue that ran the program.
const MACHINERY: &[&str] = &[
    "bpf_",
    "__bpf_",
    "perf_",
    "__perf_",
    "trace_",
    "__trace",
    "__probestub_",
    "kprobe",
    "__kprobe",
    "ftrace",
    "arch_ftrace",
    "pre_handler_kretprobe",
];

/// Why a stack could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KstackError {
    /// The map is missing from the object (build mismatch).
    #[error("map KSTACKS missing from the eBPF object")]
    MissingMap,
    /// The map could not be opened.
    #[error("map KSTACKS: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// Resolves stack ids to frames.
pub struct Kstacks {
    map: StackTraceMap<MapData>,
    symbolizer: Symbolizer,
    cache: HashMap<u32, Arc<[Frame]>>,
    /// Stacks that were gone or unreadable when asked for.
    pub unreadable: u64,
}

impl Kstacks {
    /// Takes the `KSTACKS` map out of `ebpf`.
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<Self, KstackError> {
        let map = ebpf.take_map("KSTACKS").ok_or(KstackError::MissingMap)?;
        Ok(Self {
            map: StackTraceMap::try_from(map)?,
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
            unreadable: 0,
        })
    }

    /// The frames of `raw`'s stack, if it carries one.
    pub fn frames(&mut self, raw: &TcpEvent) -> Option<Vec<Frame>> {
        if raw.flags & flags::HAS_KSTACK == 0 {
            return None;
        }
        if let Some(frames) = self.cache.get(&raw.kstack) {
            return Some(frames.to_vec());
        }
        let Ok(trace) = self.map.get(&raw.kstack, 0) else {
            self.unreadable += 1;
            return None;
        };
        let addresses: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
        let frames: Arc<[Frame]> = self.symbolise(&addresses).into();
        if self.cache.len() < limits::KSTACKS as usize {
            self.cache.insert(raw.kstack, Arc::clone(&frames));
        }
        Some(frames.to_vec())
    }

    fn symbolise(&self, addresses: &[u64]) -> Vec<Frame> {
        let source = Source::Kernel(Kernel {
            vmlinux: blazesym::MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        });
        let symbols = self
            .symbolizer
            .symbolize(&source, Input::AbsAddr(addresses))
            .unwrap_or_default();
        let frames = addresses.iter().enumerate().map(|(i, &address)| {
            let (symbol, offset) = match symbols.get(i) {
                Some(Symbolized::Sym(sym)) => (Some(sym.name.to_string()), Some(sym.offset as u64)),
                _ => (None, None),
            };
            Frame {
                address: format!("{address:#x}"),
                symbol,
                offset,
            }
        });
        trim_machinery(frames.collect())
    }
}

/// Drops the tracing machinery's frames at the top of a stack, keeping at
/// least the last frame.
fn trim_machinery(mut frames: Vec<Frame>) -> Vec<Frame> {
    let glue = frames
        .iter()
        .take_while(|f| {
            f.symbol
                .as_deref()
                .is_some_and(|s| MACHINERY.iter().any(|m| s.starts_with(m)))
        })
        .count()
        .min(frames.len().saturating_sub(1));
    frames.drain(..glue);
    frames
}

/// A frame as a backtrace line shows it: `tcp_v4_send_reset+0x2c`.
pub fn describe(frame: &Frame) -> String {
    match (&frame.symbol, frame.offset) {
        (Some(symbol), Some(offset)) => format!("{symbol}+{offset:#x}"),
        (Some(symbol), None) => symbol.clone(),
        (None, _) => frame.address.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(symbol: &str) -> Frame {
        Frame {
            address: "0xffffffff81000000".into(),
            symbol: Some(symbol.into()),
            offset: Some(0x2c),
        }
    }

    #[test]
    fn tracing_glue_is_trimmed_from_the_top_only() {
        let frames = vec![
            frame("bpf_trace_run3"),
            frame("__traceiter_tcp_send_reset"),
            frame("tcp_v4_send_reset"),
            frame("trace_other"),
        ];
        let names: Vec<_> = trim_machinery(frames)
            .iter()
            .map(|f| f.symbol.clone().unwrap())
            .collect();
        assert_eq!(names, ["tcp_v4_send_reset", "trace_other"]);
    }

    #[test]
    fn an_all_glue_stack_keeps_its_last_frame() {
        let frames = vec![frame("bpf_trace_run3"), frame("perf_trace_x")];
        assert_eq!(trim_machinery(frames).len(), 1);
    }

    #[test]
    fn frames_read_like_a_backtrace() {
        assert_eq!(describe(&frame("tcp_v4_rcv")), "tcp_v4_rcv+0x2c");
        let unknown = Frame {
            address: "0xffffffffc0001234".into(),
            symbol: None,
            offset: None,
        };
        assert_eq!(describe(&unknown), "0xffffffffc0001234");
    }
}
