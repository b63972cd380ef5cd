//! Loading the embedded eBPF object with this kernel's configuration, and
//! attaching the programs the [`Plan`] chose.

use std::time::{Duration, Instant};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, LpmTrie, MapError, lpm_trie::Key},
    programs::{KProbe, ProgramError, TracePoint},
};
use tcpwatch_common::{
    config::{CONFIG_SYMBOL, ProgramConfig, options},
    limits,
};

use super::plan::{AttachPoint, Plan, Step};
use crate::filters::FilterSets;

/// The eBPF object built by `build.rs` from `tcpwatch-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpwatch-ebpf.o"));

/// Sizes of the maps user space may tune.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    /// Ring buffer bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Entries in each owner map.
    pub max_sockets: u32,
}

/// Errors loading or attaching.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The object did not load (map creation, relocation, BTF).
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] EbpfError),
    /// A program is missing from the object (build mismatch).
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    /// A program failed to load or attach.
    #[error("{program} ({point}): {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// Attach point.
        point: String,
        /// The cause (with the verifier log for load failures).
        #[source]
        source: ProgramError,
    },
    /// A filter map could not be filled.
    #[error("filling map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The cause.
        #[source]
        source: MapError,
    },
}

/// Loads the object with `config` (layouts, states, filters) and map sizes. The
/// kernel-side log (aya-log) is compiled in but stays off unless `bpf_log`.
pub fn load(config: &ProgramConfig, sizes: MapSizes, bpf_log: bool) -> Result<Ebpf, AttachError> {
    // aya_log_common::Level: 0 = off, 5 = trace.
    let log_level: u8 = if bpf_log { 5 } else { 0 };
    EbpfLoader::new()
        // The programs use no CO-RE relocations (user space resolves every
        // offset into the config), so aya need not parse the kernel's BTF a
        // second time (about 25 MiB at start-up).
        .btf(None)
        .override_global(CONFIG_SYMBOL, config, true)
        .override_global("AYA_LOG_LEVEL", &log_level, false)
        .map_max_entries("EVENTS", sizes.ring_buffer_bytes)
        .map_max_entries("SOCK_OWNERS", sizes.max_sockets)
        .map_max_entries("FLOW_OWNERS", sizes.max_sockets)
        .map_max_entries("KSTACKS", kstack_entries(config))
        .load(OBJECT)
        .map_err(AttachError::Load)
}

/// Room in the stack map: none needed (one entry, the kernel's minimum)
/// unless `--kstack` asks for stacks.
fn kstack_entries(config: &ProgramConfig) -> u32 {
    if config.options & options::KSTACK != 0 {
        limits::KSTACKS
    } else {
        1
    }
}

/// Fills the filter sets (ports, pids, address prefixes).
pub fn fill_filters(ebpf: &mut Ebpf, sets: &FilterSets) -> Result<(), AttachError> {
    let map_err = |map| move |source| AttachError::Map { map, source };
    if !sets.ports.is_empty() {
        let mut ports: HashMap<_, u16, u8> =
            HashMap::try_from(map(ebpf, "FILTER_PORTS")?).map_err(map_err("FILTER_PORTS"))?;
        for port in &sets.ports {
            ports.insert(port, 1, 0).map_err(map_err("FILTER_PORTS"))?;
        }
    }
    if !sets.pids.is_empty() {
        let mut pids: HashMap<_, u32, u8> =
            HashMap::try_from(map(ebpf, "FILTER_PIDS")?).map_err(map_err("FILTER_PIDS"))?;
        for pid in &sets.pids {
            pids.insert(pid, 1, 0).map_err(map_err("FILTER_PIDS"))?;
        }
    }
    if !sets.prefixes.is_empty() {
        let mut addrs: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(map(ebpf, "FILTER_ADDRS")?).map_err(map_err("FILTER_ADDRS"))?;
        for (addr, bits) in &sets.prefixes {
            addrs
                .insert(&Key::new(*bits, *addr), 1, 0)
                .map_err(map_err("FILTER_ADDRS"))?;
        }
    }
    Ok(())
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, AttachError> {
    ebpf.map_mut(name).ok_or(AttachError::Map {
        map: name,
        source: MapError::InvalidName { name: name.into() },
    })
}

/// Outcome of attaching one step.
pub struct Attached {
    /// The step.
    pub step: Step,
    /// `Err` with the reason when it could not be attached.
    pub result: Result<(), AttachError>,
}

/// Attaches every step of the plan. A step that fails is reported, not fatal:
/// the caller decides whether what remains is useful.
pub fn attach(ebpf: &mut Ebpf, plan: &Plan) -> (Vec<Attached>, Duration) {
    let start = Instant::now();
    let outcomes = plan
        .steps
        .iter()
        .map(|step| Attached {
            step: *step,
            result: attach_step(ebpf, step),
        })
        .collect();
    (outcomes, start.elapsed())
}

fn attach_step(ebpf: &mut Ebpf, step: &Step) -> Result<(), AttachError> {
    let program = ebpf
        .program_mut(step.program)
        .ok_or(AttachError::MissingProgram(step.program))?;
    let failed = |source| AttachError::Program {
        program: step.program,
        point: step.point.to_string(),
        source,
    };
    match step.point {
        AttachPoint::Tracepoint { category, name } => {
            let tp: &mut TracePoint = program.try_into().map_err(failed)?;
            tp.load().map_err(failed)?;
            tp.attach(category, name).map_err(failed)?;
        }
        AttachPoint::Kprobe { function } => {
            let kp: &mut KProbe = program.try_into().map_err(failed)?;
            kp.load().map_err(failed)?;
            kp.attach(function, 0).map_err(failed)?;
        }
    }
    Ok(())
}
