//! `tcpwatch daemon`: the trace pipeline (the same start-up and session as
//! `trace`) running as a service, with the daemon's sinks: OpenMetrics,
//! journald records, a JSON Lines file and the flight recorder that
//! `tcpwatch query` asks.
//!
//! Life cycle: read and validate the configuration (exit 2 with one line on
//! bad input); attach; listen (metrics, query socket); tell systemd READY.
//! SIGHUP reloads: the new file is read, validated and its new endpoints opened
//! before anything changes; a bad one keeps the running configuration and says
//! why. The kernel programs and the ring buffer stay attached through a
//! reload, so no event is lost. SIGTERM (or SIGINT) drains the ring buffer,
//! hands on the findings still held, tells systemd STOPPING, closes the
//! endpoints and detaches every program.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::anyhow;
use tracing::{error, info, warn};

use super::{
    pipeline::{self, Options, home_netns},
    session::{Session, Signals, Stop},
};
use crate::{
    cli::DaemonArgs,
    config::{self, Config},
    events::{
        clock::Clock, convert::Converter, counters::KernelCounters, kstack::Kstacks, model::Kind,
        reader::Reader, storm::Storm,
    },
    exit::{Failure, OrExit},
    explain::engine::Engine,
    filters::Filters,
    logging::Logging,
    probes::attach::MapSizes,
    recorder::{
        server::{self, QueryCounters, QueryServer},
        store::Recorder,
    },
    service_manager,
    sinks::{
        fanout::Fanout,
        file::JsonFile,
        journald::Journald,
        metrics_endpoint::{self, Endpoint},
        prometheus::{KernelStats, Metrics},
    },
};

/// What the daemon runs with, and its open endpoints.
struct Running {
    path: PathBuf,
    config: Config,
    endpoint: Option<Endpoint>,
    query: Option<QueryServer>,
    counters: QueryCounters,
}

/// Reads the configuration: `--config FILE`, or the default path (whose
/// absence means the defaults).
fn load(args: &DaemonArgs) -> Result<(PathBuf, Config), Failure> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    if args.config.is_none() && !path.exists() {
        return Ok((path, Config::default()));
    }
    let config = Config::load(&path).or_usage()?;
    Ok((path, config))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(args: &DaemonArgs, logging: &Logging) -> Result<(), Failure> {
    let mut signals = Signals::install_with_hangup().or_runtime()?;
    let (path, config) = load(args)?;
    if args.check {
        println!("{}: valid", path.display());
        return Ok(());
    }
    logging.set_level(&config.log.level);
    let kstack_causes = config.kernel.kstack_causes();
    let options = Options {
        btf: config.kernel.btf.clone(),
        filters: Filters {
            kinds: config.kernel.kinds(),
            netns: config.netns(),
            ..Filters::default()
        },
        sizes: MapSizes {
            ring_buffer_bytes: u32::try_from(config.kernel.ring_buffer_size.0).unwrap_or(u32::MAX),
            max_sockets: config.kernel.max_sockets,
        },
        owner_grace: config.kernel.owner_grace.0,
        bpf_log: false,
        census: config.kernel.census,
        kstack: kstack_causes.is_some(),
    };
    let mut pipeline = pipeline::start(&options).await?;
    let attached = pipeline.attached_line();
    let mut reader = Reader::new(&mut pipeline.ebpf).or_runtime()?;
    let (hints, samples) = pipeline.sampler(config.explain.sample_interval.0, &config.netns())?;
    let names = pipeline.kernel.names.clone();
    let clock = Clock::sample();
    let storm =
        Storm::new(&mut pipeline.ebpf, config.kernel.storm_exit_rate, clock).or_runtime()?;
    let kstacks = match kstack_causes {
        Some(causes) => Some((Kstacks::new(&mut pipeline.ebpf).or_runtime()?, causes)),
        None => None,
    };
    let ebpf = Arc::new(Mutex::new(pipeline.ebpf));

    let metrics = Metrics::new(&config.metrics, Some(KernelStats::new(Arc::clone(&ebpf))));
    let recorder = Arc::new(Mutex::new(Recorder::new(&config.recorder)));
    let counters = QueryCounters {
        answered: metrics.query_counter("answered"),
        refused: metrics.query_counter("refused"),
    };
    let mut running = Running {
        path,
        config,
        endpoint: None,
        query: None,
        counters,
    };
    let opened = running
        .open(&running.config, &metrics, &recorder)
        .await
        .map_err(|e| anyhow!(e))
        .or_usage()?;
    let (endpoint, query, file) = opened;
    running.endpoint = endpoint;
    running.query = query;
    let fanout = Fanout {
        metrics,
        journald: Journald::new(&running.config.journald, home_netns()),
        file,
        recorder: Arc::clone(&recorder),
    };
    let mut session = Session::new(
        Converter::new(names, clock),
        fanout,
        vec![Kind::State, Kind::ResetSent, Kind::ResetReceived],
        None,
        Some(Engine::new(running.config.explain.thresholds())),
        Some(hints),
        Some(storm),
    );
    if let Some((kstacks, causes)) = kstacks {
        session = session.with_kstacks(kstacks, causes);
    }
    eprintln!("{attached}");
    info!("{}", running.status());
    service_manager::ready(&running.status());
    let watchdog = service_manager::start_watchdog();

    let since = Instant::now();
    let mut samples = Some(samples);
    let stop = loop {
        let stop = session
            .run(&mut reader, &mut samples, &mut signals, None)
            .await
            .or_runtime()?;
        if stop != Stop::Reload {
            break stop;
        }
        service_manager::reloading();
        running.reload(&mut session, &recorder, logging).await;
        service_manager::ready(&running.status());
    };
    service_manager::stopping();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    running.close().await;
    let kernel = ebpf
        .lock()
        .ok()
        .and_then(|ebpf| KernelCounters::read(&ebpf).ok())
        .unwrap_or_default();
    let summary = session.summary(stop, since.elapsed(), &kernel);
    drop(session);
    drop(reader);
    drop(ebpf); // the last reference: detaches every program
    eprintln!("tcpwatch: {summary}");
    Ok(())
}

type Opened = (Option<Endpoint>, Option<QueryServer>, Option<JsonFile>);

impl Running {
    /// One line for `systemctl status` and the log.
    fn status(&self) -> String {
        let metrics = match &self.endpoint {
            Some(e) => format!("metrics on http://{}/metrics", e.addr),
            None => "metrics off".to_owned(),
        };
        let query = match &self.query {
            Some(q) => format!("queries on {}", q.path.display()),
            None => String::new(),
        };
        format!("tracing; {metrics}; {query}")
    }

    /// Opens what `config` asks for and differs from what runs: the metrics
    /// endpoint, the query socket, the file. An error names the key.
    async fn open(
        &self,
        config: &Config,
        metrics: &Metrics,
        recorder: &Arc<Mutex<Recorder>>,
    ) -> Result<Opened, String> {
        let listen = config.metrics.listen;
        let endpoint = match &self.endpoint {
            Some(e) if config.metrics.enabled && e.addr == listen => None,
            _ if config.metrics.enabled => Some(
                metrics_endpoint::serve(listen, metrics.registry(), metrics.scrapes_refused())
                    .await
                    .map_err(|e| format!("metrics.listen: {listen}: {e}"))?,
            ),
            _ => None,
        };
        let socket = &config.query.socket;
        let query = match &self.query {
            Some(q) if q.path == *socket => None,
            _ => Some(
                server::serve(socket, Arc::clone(recorder), self.counters.clone())
                    .map_err(|e| format!("query.socket: {}: {e}", socket.display()))?,
            ),
        };
        let file = JsonFile::open(&config.file)
            .map_err(|e| format!("file.path: {}: {e}", config.file.path.display()))?;
        Ok((endpoint, query, file))
    }

    /// Reloads the configuration file; a bad one changes nothing.
    async fn reload(
        &mut self,
        session: &mut Session<Fanout>,
        recorder: &Arc<Mutex<Recorder>>,
        logging: &Logging,
    ) {
        let rejected = |session: &mut Session<Fanout>, why: &str| {
            error!("reload: {why}; keeping the running configuration");
            session.sink_mut().metrics.reload(false);
        };
        let new = match Config::load(&self.path) {
            Ok(new) => new,
            Err(e) => return rejected(session, &e.to_string()),
        };
        let restart = self.config.restart_keys(&new);
        let new = self.config.reloaded(new);
        let (endpoint, query, file) =
            match self.open(&new, &session.sink_mut().metrics, recorder).await {
                Ok(opened) => opened,
                Err(e) => return rejected(session, &e),
            };
        logging.set_level(&new.log.level);
        if let Some(engine) = session.engine_mut() {
            engine.set_thresholds(new.explain.thresholds());
        }
        let sinks = session.sink_mut();
        sinks.metrics.configure(&new.metrics);
        sinks.journald = Journald::new(&new.journald, home_netns());
        sinks.file = file;
        if let Ok(mut recorder) = recorder.lock() {
            recorder.configure(&new.recorder);
        }
        if !new.metrics.enabled {
            self.endpoint = None;
        } else if endpoint.is_some() {
            self.endpoint = endpoint;
        }
        if query.is_some() {
            self.query = query;
        }
        if !restart.is_empty() {
            warn!(
                "reload: {} changed; the running value stays until a restart",
                restart.join(", ")
            );
        }
        self.config = new;
        sinks.metrics.reload(true);
        info!("reloaded {}; {}", self.path.display(), self.status());
    }

    /// Stops serving.
    async fn close(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.stop().await;
        }
        self.query = None;
    }
}
