//! Start-up shared by `trace` and `daemon`: check privileges, inspect the
//! kernel, plan, load and attach the programs, seed the owner maps with a census
//! of existing sockets, and start the namespace sampler. What follows (the
//! [`super::session::Session`] and its sinks) differs per command.

use std::{os::unix::fs::MetadataExt, path::PathBuf, time::Duration, time::Instant};

use anyhow::{Context as _, anyhow};
use tcpwatch_common::config::options as program_options;
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use crate::{
    attrib::{census, seed},
    cli::{KernelArgs, PipelineArgs},
    context::{
        backlogs::Backlogs,
        sampler::{self, Hints, Samples},
    },
    events::clock::Clock,
    exit::{Failure, OrExit},
    filters::Filters,
    privileges,
    probes::{
        attach::{self, MapSizes},
        kernel::Kernel,
        plan::{ResetCoverage, Wants, plan_for},
    },
};

/// What the kernel side is asked to do.
pub struct Options {
    /// Kernel BTF to read layouts and names from.
    pub btf: PathBuf,
    /// In-kernel filters (kinds included).
    pub filters: Filters,
    /// Map sizes.
    pub sizes: MapSizes,
    /// How long a closed socket's owner is kept.
    pub owner_grace: Duration,
    /// Stream the programs' debug log.
    pub bpf_log: bool,
    /// Take the start-up census of existing sockets.
    pub census: bool,
    /// Record the kernel stack of every reset.
    pub kstack: bool,
}

impl Options {
    /// The options of a command-line session (`trace`, `top`): its filters,
    /// and the kernel-side settings the user gave.
    pub fn from_args(
        filters: Filters,
        pipeline: &PipelineArgs,
        kernel: &KernelArgs,
        bpf_log: bool,
    ) -> Self {
        Self {
            btf: kernel.btf.clone(),
            filters,
            sizes: MapSizes {
                ring_buffer_bytes: pipeline.ring_buffer_size,
                max_sockets: pipeline.max_sockets,
            },
            owner_grace: pipeline.owner_grace,
            bpf_log,
            census: !pipeline.no_census,
            kstack: false,
        }
    }
}

/// Programs loaded and attached.
pub struct Pipeline {
    /// The loaded object: dropping it detaches every program.
    pub ebpf: aya::Ebpf,
    /// What the running kernel offers.
    pub kernel: Kernel,
    /// Programs attached.
    pub attached: usize,
    /// When start-up began.
    pub started: Instant,
}

/// Checks privileges and filters, loads and attaches the programs, takes the
/// census. Bad input and unusable environments exit 2; the rest 1.
pub async fn start(options: &Options) -> Result<Pipeline, Failure> {
    privileges::check().or_usage()?;
    options
        .filters
        .validate()
        .map_err(|e| anyhow!(e))
        .or_usage()?;
    let started = Instant::now();
    let kernel = Kernel::inspect(&options.btf).or_usage()?;
    privileges::check_perf_events().or_usage()?;
    let wants = Wants {
        drops: options
            .filters
            .kinds
            .contains(&tcpwatch_common::event::EventKind::Drop),
        app_errors: options
            .filters
            .kinds
            .contains(&tcpwatch_common::event::EventKind::AppError),
    };
    let plan = plan_for(&kernel.features, wants).or_usage()?;
    if !kernel.features.btf && !options.filters.netns.is_empty() {
        return Err(anyhow!(
            "--netns needs kernel BTF (events carry no namespace without it)"
        ))
        .or_usage();
    }
    for lost in privileges::limits()
        .into_iter()
        .chain(kernel.lost.iter().map(String::as_str))
    {
        warn!("{lost}");
    }
    for (role, why) in &plan.reasons {
        if why.starts_with("unavailable") {
            warn!("{}: {why}", role.label());
        }
    }
    if plan.reset_coverage == ResetCoverage::FullSocketsOnly {
        warn!("this kernel reports only resets sent for full sockets; see `tcpwatch probes`");
    }

    let grace = u64::try_from(options.owner_grace.as_nanos()).unwrap_or(u64::MAX);
    let mut config = kernel.program_config(options.filters.config(), grace);
    // Storm mode starts with the ring buffer half full.
    config.storm_high_water = options.sizes.ring_buffer_bytes / 2;
    if options.kstack {
        config.options |= program_options::KSTACK;
    }
    let mut ebpf = attach::load(&config, options.sizes, options.bpf_log).or_runtime()?;
    attach::fill_filters(&mut ebpf, &options.filters.sets()).or_runtime()?;
    if options.bpf_log {
        start_bpf_log(&mut ebpf).or_runtime()?;
    }
    let (outcomes, _) = attach::attach(&mut ebpf, &plan);
    let mut attached = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(()) => attached += 1,
            Err(e) => warn!(
                "{} not attached ({}): {e:#}",
                outcome.step.point,
                outcome.step.role.label()
            ),
        }
    }
    if attached == 0 {
        return Err(anyhow!("no program could be attached")).or_runtime();
    }
    if options.census {
        run_census(&mut ebpf, &kernel, options.sizes.max_sockets).await;
    }
    Ok(Pipeline {
        ebpf,
        kernel,
        attached,
        started,
    })
}

impl Pipeline {
    /// The line that tells people and scripts that events now count.
    pub fn attached_line(&self) -> String {
        format!(
            "tcpwatch: attached {} programs in {} ms; tracing",
            self.attached,
            self.started.elapsed().as_millis()
        )
    }

    /// Starts the namespace sampler (`netns`: namespaces always sampled; empty
    /// for tcpwatch's own).
    pub fn sampler(
        &mut self,
        interval: Duration,
        netns: &[u32],
    ) -> Result<(Hints, Samples), Failure> {
        sampler::start(
            self.kernel.names.clone(),
            interval,
            netns.iter().map(|ns| (*ns, None)).collect(),
            Backlogs::take(&mut self.ebpf),
        )
        .or_runtime()
    }
}

/// Seeds the owner maps with the sockets that already exist. Failures only cost
/// attribution of old sockets: warn and go on.
async fn run_census(ebpf: &mut aya::Ebpf, kernel: &Kernel, max: u32) {
    let started = Instant::now();
    let census = match tokio::task::spawn_blocking(move || census::take(max as usize)).await {
        Ok(Ok(census)) => census,
        Ok(Err(e)) => {
            warn!(
                "census of existing sockets failed: {e}; sockets opened before start are not attributed"
            );
            return;
        }
        Err(e) => {
            warn!("census of existing sockets failed: {e}");
            return;
        }
    };
    for warning in &census.warnings {
        warn!("census: {warning}");
    }
    if census.truncated {
        warn!("census stopped at {max} sockets (--max-sockets)");
    }
    match seed::seed(
        ebpf,
        &census,
        kernel.states.listen,
        Clock::monotonic_now_ns(),
    ) {
        Ok(stats) => info!(
            "census: {} sockets in {} namespaces in {} ms: {} connections and {} listeners attributed, {} without owner",
            census.sockets.len(),
            census.namespaces,
            started.elapsed().as_millis(),
            stats.flows,
            stats.listeners,
            stats.unowned
        ),
        Err(e) => warn!("census: writing owners failed: {e}"),
    }
}

/// Streams the kernel programs' aya-log output to our log (stderr).
fn start_bpf_log(ebpf: &mut aya::Ebpf) -> anyhow::Result<()> {
    let logger = aya_log::EbpfLogger::init(ebpf).context("starting the kernel-side log")?;
    // SAFETY: the logger owns its ring-buffer map's fd for its whole life and
    // always reports that same fd; the AsyncFd owns the logger.
    let mut logger = unsafe { AsyncFd::register(logger) }
        .map_err(|e| anyhow::anyhow!("polling the kernel-side log: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

/// Inode of our own network namespace (left implicit in text output).
pub fn home_netns() -> u32 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}
