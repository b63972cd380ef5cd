//! The daemon's configuration: a TOML file (`/etc/tcpwatch/config.toml` by
//! default), every key optional with the default shown in
//! `deploy/config.toml`. Loading validates everything and fails with one line
//! naming the file, the key and the problem.
//!
//! Keys under `[kernel]` and `explain.sample_interval` shape what is loaded
//! into the kernel or started once; a reload (SIGHUP) keeps their running
//! values and says so. Everything else applies on reload.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use tcpwatch_common::{event::EventKind, limits};

use crate::{
    events::model::Kind,
    explain::{cause::Cause, thresholds::Thresholds},
    filters::{self, Kinds},
};

/// Where the daemon reads its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/tcpwatch/config.toml";
/// Configuration files larger than this are rejected.
const MAX_FILE: u64 = 1 << 20;

/// A configuration that cannot be used: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}{sep}{problem}", sep = if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The dotted key (`metrics.listen`), or `line N` for a syntax error, or
    /// empty when the file itself is the problem.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Diagnostics.
    pub log: Log,
    /// What is loaded into the kernel (restart to change).
    pub kernel: KernelConfig,
    /// Thresholds of the explanations.
    pub explain: Explain,
    /// The OpenMetrics endpoint.
    pub metrics: Metrics,
    /// Structured log records for journald.
    pub journald: Journald,
    /// The JSON Lines file.
    pub file: File,
    /// The flight recorder.
    pub recorder: Recorder,
    /// The query socket.
    pub query: Query,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[kernel]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// Kernel BTF.
    pub btf: PathBuf,
    /// Ring buffer bytes (a power of two, at least 4 KiB).
    pub ring_buffer_size: Size,
    /// Capacity of each socket-owner table.
    pub max_sockets: u32,
    /// How long a closed socket's owner is remembered.
    pub owner_grace: Dur,
    /// Take the start-up census of existing sockets.
    pub census: bool,
    /// Only these network namespaces (inodes, or paths such as
    /// `/run/netns/NAME`); empty for all.
    pub netns: Vec<String>,
    /// A storm (events summarised in the kernel) ends once fewer than this many
    /// events per second are summarised.
    pub storm_exit_rate: u64,
    /// Findings of these causes (ids, or `all`) carry the kernel stack of
    /// their reset; empty: no stacks are taken (restart to change).
    pub kstack: Vec<String>,
    /// Also trace TCP segments the kernel drops (`skb:kfree_skb`): reset
    /// findings list the drops before them (restart to change).
    pub drops: bool,
    /// Also trace reads and writes that fail with a reset's or a timeout's
    /// error (`sock:sock_*_length`, 6.4+): findings say what the application
    /// saw (restart to change).
    pub app_errors: bool,
}

impl KernelConfig {
    /// The event kinds the kernel programs send: every default kind, and the
    /// opt-in ones this configuration asks for.
    pub fn kinds(&self) -> Vec<EventKind> {
        let mut kinds = EventKind::ALL.to_vec();
        if self.drops {
            kinds.push(EventKind::Drop);
        }
        if self.app_errors {
            kinds.push(EventKind::AppError);
        }
        kinds
    }

    /// Whether stacks are taken, and for which causes' findings (`None`: all).
    pub fn kstack_causes(&self) -> Option<Option<Vec<Cause>>> {
        if self.kstack.is_empty() {
            None
        } else if self.kstack.iter().any(|c| c == "all") {
            Some(None)
        } else {
            Some(Some(
                self.kstack
                    .iter()
                    .filter_map(|c| Cause::from_id(c))
                    .collect(),
            ))
        }
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            btf: PathBuf::from("/sys/kernel/btf/vmlinux"),
            ring_buffer_size: Size(u64::from(limits::RING_BUFFER_BYTES)),
            max_sockets: limits::SOCKET_OWNERS,
            owner_grace: Dur(Duration::from_secs(120)),
            census: true,
            netns: Vec::new(),
            storm_exit_rate: 5000,
            kstack: Vec::new(),
            drops: false,
            app_errors: false,
        }
    }
}

/// `[explain]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Explain {
    /// How often active namespaces are sampled (restart to change).
    pub sample_interval: Dur,
    /// A close after this much idle time is a keep-alive idle close.
    pub idle_close: Dur,
    /// TIME_WAIT sockets before a pile-up is judged.
    pub time_wait_threshold: u32,
    /// A CLOSE_WAIT socket idle this long counts as leaked.
    pub close_wait_age: Dur,
    /// Leaked CLOSE_WAIT sockets in one process before a finding.
    pub close_wait_count: u32,
}

impl Default for Explain {
    fn default() -> Self {
        Self {
            sample_interval: Dur(Duration::from_secs(1)),
            idle_close: Dur(Duration::from_millis(500)),
            time_wait_threshold: 200,
            close_wait_age: Dur(Duration::from_secs(10)),
            close_wait_count: 5,
        }
    }
}

impl Explain {
    /// The engine's thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            idle_close: self.idle_close.0,
            time_wait_min: self.time_wait_threshold,
            time_wait_high: self.time_wait_threshold.saturating_mul(25),
            close_wait_age: self.close_wait_age.0,
            close_wait_count: self.close_wait_count,
            ..Thresholds::default()
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Series per metric labelled by owner (comm and unit) at most; more go to
    /// `owner_comm="other"` and are counted.
    pub max_owner_series: u32,
    /// Series of sockets per listening port at most.
    pub max_port_series: u32,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9979)),
            max_owner_series: 500,
            max_port_series: 200,
        }
    }
}

/// `[journald]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Journald {
    /// Write findings as log records.
    pub findings: bool,
    /// Events written as log records too.
    pub events: EventKinds,
}

impl Default for Journald {
    fn default() -> Self {
        Self {
            findings: true,
            events: EventKinds(Vec::new()),
        }
    }
}

/// `[file]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct File {
    /// The JSON Lines file; empty for none.
    pub path: PathBuf,
    /// Events written (findings always are).
    pub events: EventKinds,
    /// Write namespace samples too (so `tcpwatch explain --from` can replay the
    /// file).
    pub samples: bool,
    /// Rotate when the file would grow past this.
    pub max_size: Size,
    /// Rotated files kept (`PATH.1` newest).
    pub keep: u32,
}

impl Default for File {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            events: EventKinds(vec![Kind::ResetSent, Kind::ResetReceived]),
            samples: false,
            max_size: Size(100 << 20),
            keep: 5,
        }
    }
}

/// `[recorder]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recorder {
    /// How far back events and findings are kept.
    pub retention: Dur,
    /// Memory they may take at most; the oldest go first (counted).
    pub max_memory: Size,
    /// Events recorded (findings always are).
    pub events: EventKinds,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            retention: Dur(Duration::from_secs(15 * 60)),
            max_memory: Size(64 << 20),
            events: EventKinds(vec![Kind::ResetSent, Kind::ResetReceived]),
        }
    }
}

/// `[query]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    /// The unix socket `tcpwatch query` asks (created mode 0600).
    pub socket: PathBuf,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/tcpwatch/query.sock"),
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let whole = |problem: String| ConfigError {
            file: file.clone(),
            key: String::new(),
            problem,
        };
        let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        if meta.len() > MAX_FILE {
            return Err(whole(format!("larger than {MAX_FILE} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        Self::parse(&text, &file)
    }

    /// Parses and validates TOML text read from `file`.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let error = |key: String, problem: String| ConfigError {
            file: file.to_owned(),
            key,
            problem,
        };
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| {
                format!(
                    "line {}",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
        };
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|e| error(line_of(e.span()).unwrap_or_default(), one_line(e.message())))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = one_line(inner.message());
            let key = if path == "." {
                line_of(inner.span()).unwrap_or_default()
            } else {
                path
            };
            let problem = if message.starts_with("unknown field") {
                format!(
                    "unknown key ({})",
                    message.split_once(", ").map_or("", |m| m.1)
                )
            } else {
                message
            };
            error(key, problem)
        })?;
        config
            .validate()
            .map_err(|(key, problem)| error(key.to_owned(), problem))?;
        Ok(config)
    }

    /// Range and consistency checks serde cannot express.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.log.level.as_str()) {
            return Err((
                "log.level",
                format!("'{}' is not one of {}", self.log.level, LEVELS.join(", ")),
            ));
        }
        let ring = self.kernel.ring_buffer_size.0;
        if ring < 4096 || !ring.is_power_of_two() || ring > 1 << 30 {
            return Err((
                "kernel.ring_buffer_size",
                format!("{ring} is not a power of two between 4096 and 1 GiB"),
            ));
        }
        if !(1024..=16_777_216).contains(&self.kernel.max_sockets) {
            return Err((
                "kernel.max_sockets",
                format!("{} is not in 1024..=16777216", self.kernel.max_sockets),
            ));
        }
        if self.kernel.netns.len() > limits::FILTER_NETNS {
            return Err((
                "kernel.netns",
                format!("at most {} namespaces", limits::FILTER_NETNS),
            ));
        }
        if let Some(Err(e)) = self
            .kernel
            .netns
            .iter()
            .map(|ns| filters::parse_netns(ns))
            .find(Result::is_err)
        {
            return Err(("kernel.netns", e));
        }
        if let Some(bad) = self
            .kernel
            .kstack
            .iter()
            .find(|c| *c != "all" && Cause::from_id(c).is_none())
        {
            return Err((
                "kernel.kstack",
                format!("'{bad}' is not a cause id (see docs/causes) or `all`"),
            ));
        }
        if self.kernel.storm_exit_rate == 0 {
            return Err(("kernel.storm_exit_rate", "must be at least 1".into()));
        }
        if !self.kernel.btf.is_absolute() {
            return Err(("kernel.btf", "must be an absolute path".into()));
        }
        if self.explain.sample_interval.0 < Duration::from_millis(100) {
            return Err((
                "explain.sample_interval",
                "is too short (at least 100ms)".into(),
            ));
        }
        for (key, value) in [
            (
                "explain.time_wait_threshold",
                self.explain.time_wait_threshold,
            ),
            ("explain.close_wait_count", self.explain.close_wait_count),
        ] {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        for (key, value) in [
            ("metrics.max_owner_series", self.metrics.max_owner_series),
            ("metrics.max_port_series", self.metrics.max_port_series),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err((key, format!("{value} is not in 1..=100000")));
            }
        }
        if !self.file.path.as_os_str().is_empty() && !self.file.path.is_absolute() {
            return Err((
                "file.path",
                "must be an absolute path (or empty for none)".into(),
            ));
        }
        if self.file.max_size.0 < 4096 {
            return Err(("file.max_size", "must be at least 4096 bytes".into()));
        }
        if !(1..=100).contains(&self.file.keep) {
            return Err(("file.keep", format!("{} is not in 1..=100", self.file.keep)));
        }
        let retention = self.recorder.retention.0;
        if retention < Duration::from_secs(1) || retention > Duration::from_secs(24 * 3600) {
            return Err(("recorder.retention", "must be between 1s and 24h".into()));
        }
        if self.recorder.max_memory.0 < 1 << 20 {
            return Err(("recorder.max_memory", "must be at least 1 MiB".into()));
        }
        let socket = &self.query.socket;
        if !socket.is_absolute() || socket.as_os_str().len() >= 108 {
            return Err((
                "query.socket",
                "must be an absolute path shorter than 108 bytes".into(),
            ));
        }
        Ok(())
    }

    /// Keys whose change needs a restart and that differ in `new`.
    pub fn restart_keys(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.kernel, &new.kernel);
        [
            ("kernel.btf", a.btf != b.btf),
            (
                "kernel.ring_buffer_size",
                a.ring_buffer_size != b.ring_buffer_size,
            ),
            ("kernel.max_sockets", a.max_sockets != b.max_sockets),
            ("kernel.owner_grace", a.owner_grace != b.owner_grace),
            ("kernel.census", a.census != b.census),
            ("kernel.netns", a.netns != b.netns),
            (
                "kernel.storm_exit_rate",
                a.storm_exit_rate != b.storm_exit_rate,
            ),
            ("kernel.kstack", a.kstack != b.kstack),
            ("kernel.drops", a.drops != b.drops),
            ("kernel.app_errors", a.app_errors != b.app_errors),
            (
                "explain.sample_interval",
                self.explain.sample_interval != new.explain.sample_interval,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// The inodes of `kernel.netns` (validated on load).
    pub fn netns(&self) -> Vec<u32> {
        self.kernel
            .netns
            .iter()
            .filter_map(|ns| filters::parse_netns(ns).ok())
            .collect()
    }

    /// `new` with the running values of the keys a reload cannot change.
    pub fn reloaded(&self, mut new: Config) -> Config {
        new.kernel = self.kernel.clone();
        new.explain.sample_interval = self.explain.sample_interval;
        new
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A duration written as text (`500ms`, `30s`, `5m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map(Dur).map_err(|_| {
            de::Error::custom(format!(
                "'{text}' is not a duration (for example \"500ms\", \"30s\", \"5m\")"
            ))
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A size in bytes: a number, or text with a unit (`64KiB`, `4MiB`, `1GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            _ => return None,
        };
        number.parse::<u64>().ok()?.checked_mul(1 << shift)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes or text such as \"64MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{v} is not a size")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "'{v}' is not a size (a number of bytes, or with KiB, MiB, GiB)"
                    ))
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let text = match v {
            _ if v >= 1 << 30 && v.is_multiple_of(1 << 30) => format!("{}GiB", v >> 30),
            _ if v >= 1 << 20 && v.is_multiple_of(1 << 20) => format!("{}MiB", v >> 20),
            _ if v >= 1 << 10 && v.is_multiple_of(1 << 10) => format!("{}KiB", v >> 10),
            _ => return s.serialize_u64(v),
        };
        s.serialize_str(&text)
    }
}

/// Event kinds as `--kind` takes them (`reset`, `state`, `all`, a
/// comma-separated list), or `none`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventKinds(pub Vec<Kind>);

impl<'de> Deserialize<'de> for EventKinds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "none" {
            return Ok(Self(Vec::new()));
        }
        let Kinds(kinds) =
            filters::parse_kinds(&text).map_err(|e| de::Error::custom(format!("{e}, or none")))?;
        Ok(Self(kinds.into_iter().map(Kind::from_wire).collect()))
    }
}

impl Serialize for EventKinds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all = [Kind::State, Kind::ResetSent, Kind::ResetReceived];
        let text = if self.0.is_empty() {
            "none".to_owned()
        } else if all.iter().all(|k| self.0.contains(k)) {
            "all".to_owned()
        } else if self.0 == [Kind::ResetSent, Kind::ResetReceived] {
            "reset".to_owned()
        } else {
            self.0
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        s.serialize_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "c.toml").unwrap_err().to_string()
    }

    /// Dotted keys of every leaf of a TOML table.
    fn keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let key = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => keys(t, &format!("{key}."), out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let text = include_str!("../../deploy/config.toml");
        let parsed = Config::parse(text, "deploy/config.toml").expect("example parses");
        assert_eq!(parsed, Config::default(), "the example shows the defaults");
        let mut documented = BTreeSet::new();
        keys(&text.parse::<toml::Table>().unwrap(), "", &mut documented);
        let mut all = BTreeSet::new();
        let default = toml::Table::try_from(Config::default()).unwrap();
        keys(&default, "", &mut all);
        assert_eq!(documented, all, "every key is in the example");
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("", "c.toml").unwrap(), Config::default());
    }

    #[test]
    fn values_and_units() {
        let c = Config::parse(
            "[kernel]\nring_buffer_size = \"8MiB\"\n[file]\npath = \"/var/log/tcpwatch/x.jsonl\"\nmax_size = 65536\nevents = \"all\"\n[recorder]\nevents = \"none\"\nretention = \"5m\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.kernel.ring_buffer_size, Size(8 << 20));
        assert_eq!(c.file.max_size, Size(65536));
        assert_eq!(c.file.events.0.len(), 3);
        assert!(c.recorder.events.0.is_empty());
        assert_eq!(c.recorder.retention, Dur(Duration::from_secs(300)));
    }

    #[test]
    fn errors_name_the_key_and_the_problem_on_one_line() {
        let cases = [
            (
                "[metrics]\nlisten = \"localhost\"\n",
                "c.toml: metrics.listen: invalid socket address syntax",
            ),
            (
                "[metrics]\nlistne = \"127.0.0.1:1\"\n",
                "c.toml: metrics.listne: unknown key (expected one of",
            ),
            ("[metricz]\n", "c.toml: metricz: unknown key"),
            (
                "[kernel]\nring_buffer_size = 5000\n",
                "c.toml: kernel.ring_buffer_size: 5000 is not a power of two",
            ),
            (
                "[kernel]\nring_buffer_size = \"4 furlongs\"\n",
                "c.toml: kernel.ring_buffer_size: '4 furlongs' is not a size",
            ),
            (
                "[recorder]\nretention = \"soon\"\n",
                "c.toml: recorder.retention: 'soon' is not a duration",
            ),
            (
                "[file]\nevents = \"resets,bogus\"\n",
                "c.toml: file.events: unknown kind 'bogus'",
            ),
            (
                "[file]\nkeep = 0\n",
                "c.toml: file.keep: 0 is not in 1..=100",
            ),
            (
                "[file]\npath = \"relative.jsonl\"\n",
                "c.toml: file.path: must be an absolute path",
            ),
            (
                "[log]\nlevel = \"loud\"\n",
                "c.toml: log.level: 'loud' is not one of",
            ),
            (
                "[metrics]\nenabled = \"yes\"\n",
                "c.toml: metrics.enabled: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[kernel]\nkstack = [\"no_listener\", \"sun_spots\"]\n",
                "c.toml: kernel.kstack: 'sun_spots' is not a cause id",
            ),
            ("[metrics\n", "c.toml: line 1: "),
            ("a = 1\n[x]\n = 2\n", "c.toml: line 3: "),
        ];
        for (text, expected) in cases {
            let e = err(text);
            assert!(
                e.starts_with(expected),
                "{text:?}: got {e:?}, expected {expected:?}"
            );
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn kstack_causes() {
        let with = |text: &str| {
            Config::parse(text, "c.toml")
                .unwrap()
                .kernel
                .kstack_causes()
        };
        assert_eq!(with(""), None, "off by default");
        assert_eq!(with("[kernel]\nkstack = [\"all\"]\n"), Some(None));
        assert_eq!(
            with("[kernel]\nkstack = [\"no_listener\"]\n"),
            Some(Some(vec![Cause::NoListener]))
        );
    }

    #[test]
    fn reload_keeps_what_needs_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.kernel.max_sockets = 4096;
        new.metrics.max_port_series = 10;
        assert_eq!(old.restart_keys(&new), ["kernel.max_sockets"]);
        let effective = old.reloaded(new);
        assert_eq!(effective.kernel.max_sockets, old.kernel.max_sockets);
        assert_eq!(effective.metrics.max_port_series, 10);
    }
}
