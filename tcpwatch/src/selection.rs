//! Which records a reader wants, decided in user space on the records
//! themselves: `tcpwatch query` (by port, pid, cause, unit, cgroup, container)
//! and `trace --unit/--cgroup/--container` (the kernel filters cannot see
//! units). Criteria of different kinds must all hold; several values of one
//! kind are alternatives.
//!
//! A process criterion (pid, unit, cgroup, container) holds for an event when
//! its owner or its listener meets all of them, and for a finding when its
//! owner or the peer's owner does. A port holds when either end of the flow, or
//! a pile-up's port, has it. Causes select findings; an event is then shown
//! when it belongs to the connection of a selected finding (see
//! [`FlowKey`]).

use serde::{Deserialize, Serialize};

use crate::{
    events::model::{AggregateRecord, EventRecord, Flow, Process},
    explain::{cause::Cause, finding::FindingRecord},
};

/// A cgroup criterion: an id, or a path and everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMatch {
    /// The cgroup v2 id (inode of its directory).
    Id(u64),
    /// A cgroup path: itself and its descendants.
    Path(String),
}

impl CgroupMatch {
    /// Parses `--cgroup`: a number (id) or a path starting with `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(id) = text.parse::<u64>() {
            return Ok(Self::Id(id));
        }
        if text.starts_with('/') {
            let path = text.trim_end_matches('/');
            return Ok(Self::Path(
                if path.is_empty() { "/" } else { path }.to_owned(),
            ));
        }
        Err(format!(
            "'{text}' is not a cgroup id or a cgroup path (e.g. /system.slice/nginx.service)"
        ))
    }

    fn matches(&self, process: &Process) -> bool {
        match self {
            Self::Id(id) => process.cgroup_id == *id,
            Self::Path(prefix) => process.cgroup.as_deref().is_some_and(|path| {
                prefix == "/"
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
        }
    }
}

/// Parses `--unit`: a unit name (`nginx.service`, or `nginx` for the service).
pub fn parse_unit(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('/') || text.chars().any(char::is_whitespace) {
        return Err(format!("'{text}' is not a systemd unit name"));
    }
    Ok(text.to_owned())
}

/// Parses `--container`: a container id or a prefix of one (hex digits).
pub fn parse_container(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "'{text}' is not a container id (up to 64 hex digits; a prefix is enough)"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// The selection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Selection {
    /// Local or remote ports (or a pile-up's port).
    pub ports: Vec<u16>,
    /// Process ids of the owner (or listener, or peer).
    pub pids: Vec<u32>,
    /// Causes of findings.
    pub causes: Vec<Cause>,
    /// systemd units (`nginx.service`; `nginx` means `nginx.service`).
    pub units: Vec<String>,
    /// cgroups.
    pub cgroups: Vec<CgroupMatch>,
    /// Container ids or prefixes.
    pub containers: Vec<String>,
}

impl Selection {
    /// Whether an event is selected, causes aside (see [`Self::event_of`]).
    pub fn event(&self, event: &EventRecord) -> bool {
        self.flow_ports(Some(&event.flow), None)
            && self.any_process([event.owner.as_ref(), event.listener.as_ref()])
    }

    /// Whether an event is selected when causes are asked for: it must also
    /// belong to one of `flows` (the connections of the selected findings).
    pub fn event_of(&self, event: &EventRecord, flows: &[FlowKey]) -> bool {
        self.event(event) && (self.causes.is_empty() || flows.contains(&FlowKey::of(&event.flow)))
    }

    /// Whether events the kernel summarised in a storm are selected (never when
    /// causes are asked for: a summary has none).
    pub fn aggregate(&self, a: &AggregateRecord) -> bool {
        self.causes.is_empty()
            && self.flow_ports(Some(&a.example), Some(a.port))
            && self.any_process([a.owner.as_ref(), a.listener.as_ref()])
    }

    /// Whether a finding is selected.
    pub fn finding(&self, finding: &FindingRecord) -> bool {
        (self.causes.is_empty() || self.causes.contains(&finding.cause))
            && self.flow_ports(finding.flow.as_ref(), finding.port)
            && self.any_process([finding.owner.as_ref(), finding.peer_owner.as_ref()])
    }

    /// Whether the process criteria (pid, unit, cgroup, container) select
    /// anything beyond everything.
    fn has_process_criteria(&self) -> bool {
        !(self.pids.is_empty()
            && self.units.is_empty()
            && self.cgroups.is_empty()
            && self.containers.is_empty())
    }

    fn any_process<'a>(&self, candidates: impl IntoIterator<Item = Option<&'a Process>>) -> bool {
        !self.has_process_criteria() || candidates.into_iter().flatten().any(|p| self.process(p))
    }

    fn process(&self, p: &Process) -> bool {
        (self.pids.is_empty() || self.pids.contains(&p.pid))
            && (self.units.is_empty()
                || p.unit
                    .as_deref()
                    .is_some_and(|unit| self.units.iter().any(|u| unit_matches(u, unit))))
            && (self.cgroups.is_empty() || self.cgroups.iter().any(|c| c.matches(p)))
            && (self.containers.is_empty()
                || p.container
                    .as_deref()
                    .is_some_and(|id| self.containers.iter().any(|c| id.starts_with(c.as_str()))))
    }

    fn flow_ports(&self, flow: Option<&Flow>, port: Option<u16>) -> bool {
        if self.ports.is_empty() {
            return true;
        }
        let ends = flow
            .map(|f| [port_of(&f.src), port_of(&f.dst)])
            .unwrap_or_default();
        ends.into_iter()
            .chain([port])
            .flatten()
            .any(|p| self.ports.contains(&p))
    }
}

fn unit_matches(wanted: &str, unit: &str) -> bool {
    unit == wanted || unit.strip_suffix(".service") == Some(wanted)
}

/// The port of an `addr:port` (or `[addr]:port`) text.
pub fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// One connection, whatever the direction its events were reported in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    netns: u32,
    ends: (String, String),
}

impl FlowKey {
    /// The key of a flow.
    pub fn of(flow: &Flow) -> Self {
        let (a, b) = (flow.src.clone(), flow.dst.clone());
        Self {
            netns: flow.netns,
            ends: if a <= b { (a, b) } else { (b, a) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::testkit::proc;

    fn placed(pid: u32, unit: &str, path: &str, container: Option<&str>) -> Process {
        let mut p = proc(pid, "srv");
        p.unit = Some(unit.to_owned());
        p.cgroup = Some(path.to_owned());
        p.cgroup_id = 77;
        p.container = container.map(str::to_owned);
        p
    }

    #[test]
    fn units_cgroups_containers_and_pids() {
        let id = "ab".repeat(32);
        let p = placed(7, "nginx.service", "/system.slice/nginx.service", Some(&id));
        let sel = |f: fn(&mut Selection)| {
            let mut s = Selection::default();
            f(&mut s);
            s
        };
        assert!(Selection::default().process(&p));
        assert!(sel(|s| s.units = vec!["nginx".into()]).process(&p));
        assert!(sel(|s| s.units = vec!["nginx.service".into()]).process(&p));
        assert!(!sel(|s| s.units = vec!["redis".into()]).process(&p));
        assert!(sel(|s| s.cgroups = vec![CgroupMatch::Id(77)]).process(&p));
        assert!(
            sel(|s| s.cgroups = vec![CgroupMatch::parse("/system.slice").unwrap()]).process(&p)
        );
        assert!(!sel(|s| s.cgroups = vec![CgroupMatch::parse("/system.sl").unwrap()]).process(&p));
        assert!(sel(|s| s.containers = vec!["abab".into()]).process(&p));
        assert!(!sel(|s| s.containers = vec!["cd".into()]).process(&p));
        assert!(
            !sel(|s| {
                s.pids = vec![7];
                s.units = vec!["redis".into()];
            })
            .process(&p)
        );
    }

    #[test]
    fn parsing() {
        assert_eq!(CgroupMatch::parse("12"), Ok(CgroupMatch::Id(12)));
        assert_eq!(
            CgroupMatch::parse("/a/b/"),
            Ok(CgroupMatch::Path("/a/b".into()))
        );
        assert!(CgroupMatch::parse("a/b").is_err());
        assert!(parse_container("xyz").is_err());
        assert_eq!(parse_container("ABc1").as_deref(), Ok("abc1"));
        assert!(parse_unit("").is_err());
        assert_eq!(port_of("[::1]:8080"), Some(8080));
        assert_eq!(port_of("127.0.0.1:9"), Some(9));
        let f = |src: &str, dst: &str| Flow {
            family: "ipv4".into(),
            src: src.into(),
            dst: dst.into(),
            netns: 1,
        };
        assert_eq!(
            FlowKey::of(&f("127.0.0.1:9", "127.0.0.1:5000")),
            FlowKey::of(&f("127.0.0.1:5000", "127.0.0.1:9"))
        );
    }
}
