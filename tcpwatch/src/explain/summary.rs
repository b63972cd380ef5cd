//! Ranking of causes by count, with their top owners and ports (`--summary`).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use serde_json::json;

use super::{cause::Cause, finding::FindingRecord};

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    owners: HashMap<String, u64>,
    ports: HashMap<u16, u64>,
}

/// Occurrences per cause.
#[derive(Debug, Default)]
pub struct Summary {
    causes: BTreeMap<Cause, Tally>,
}

impl Summary {
    /// Counts `n` occurrences of `finding` on local port `port`.
    pub fn add(&mut self, finding: &FindingRecord, port: Option<u16>, n: u64) {
        let tally = self.causes.entry(finding.cause).or_default();
        tally.count += n;
        if let Some(owner) = &finding.owner {
            *tally
                .owners
                .entry(format!("{}[{}]", owner.comm, owner.pid))
                .or_default() += n;
        }
        if let Some(port) = port.or(finding.port) {
            *tally.ports.entry(port).or_default() += n;
        }
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.causes.is_empty()
    }

    fn ranked(&self) -> Vec<(Cause, &Tally)> {
        let mut ranked: Vec<_> = self.causes.iter().map(|(c, t)| (*c, t)).collect();
        ranked.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        ranked
    }

    /// The ranking as text.
    pub fn render(&self) -> String {
        let mut out = String::from("Causes, most frequent first:\n");
        for (cause, tally) in self.ranked() {
            let _ = writeln!(
                out,
                "  {:>6}  {:<30} owners: {}  ports: {}",
                tally.count,
                cause.id(),
                top(&tally.owners, |s| s.clone()),
                top(&tally.ports, u16::to_string),
            );
        }
        out
    }

    /// The ranking as a JSON record.
    pub fn to_json(&self) -> serde_json::Value {
        let causes: Vec<_> = self
            .ranked()
            .into_iter()
            .map(|(cause, t)| {
                json!({
                    "cause": cause,
                    "count": t.count,
                    "owners": sorted(&t.owners).into_iter().take(5).map(|(k, v)| json!({"owner": k, "count": v})).collect::<Vec<_>>(),
                    "ports": sorted(&t.ports).into_iter().take(5).map(|(k, v)| json!({"port": k, "count": v})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"schema_version": 1, "record": "summary", "causes": causes})
    }
}

fn sorted<K: Clone + Ord>(map: &HashMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<_> = map.iter().map(|(k, n)| (k.clone(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn top<K: Clone + Ord>(map: &HashMap<K, u64>, show: impl Fn(&K) -> String) -> String {
    let v = sorted(map);
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .take(3)
        .map(|(k, n)| format!("{} ({n})", show(k)))
        .collect::<Vec<_>>()
        .join(", ")
}
