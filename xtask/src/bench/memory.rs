//! Memory with many tracked sockets: tcpwatch started with `--max-sockets N`
//! (100k and 1M), its kernel owner tables filled to N entries (synthetic
//! fills from user space: this machine cannot hold a million real sockets),
//! and its user-space flow history filled by real connections. Reports kernel
//! bytes per tracked socket (`bytes_memlock` of the tables, from bpftool) and
//! tcpwatch's resident memory.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, Map, MapData, loaded_maps};
use tcpwatch_common::{flow::FlowKey, owner::OwnerRecord};

use super::{
    load,
    report::Report,
    traced::{Traced, stat},
};

/// The newest loaded map named `name` (the kernel keeps 15 characters).
fn map_id(name: &str) -> Result<u32> {
    loaded_maps()
        .filter_map(Result::ok)
        .filter(|m| m.name_as_str() == Some(name))
        .map(|m| m.id())
        .max()
        .with_context(|| format!("no loaded map {name}"))
}

/// `bytes_memlock` of map `id`.
fn memlock(id: u32) -> Result<u64> {
    let out = Command::new("bpftool")
        .args(["map", "show", "id", &id.to_string(), "-j"])
        .output()
        .context("bpftool")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool JSON")?;
    v["bytes_memlock"]
        .as_u64()
        .or_else(|| v["bytes_memlock"].as_str().and_then(|s| s.parse().ok()))
        .context("no bytes_memlock")
}

/// Fills map `id` (an LRU hash) with `n` synthetic entries made by `entry`.
fn fill<K: aya::Pod, V: aya::Pod>(id: u32, n: u32, entry: impl Fn(u32) -> (K, V)) -> Result<()> {
    let map = Map::LruHashMap(MapData::from_id(id)?);
    let mut table: HashMap<MapData, K, V> = HashMap::try_from(map)?;
    for i in 0..n {
        let (k, v) = entry(i);
        table.insert(k, v, 0)?;
    }
    Ok(())
}

/// Runs the memory benchmark.
pub fn run(tcpwatch: &Path, netns: u32, seconds: f64, report: &mut Report) -> Result<()> {
    let mut rows = Vec::new();
    for n in [100_000u32, 1_048_576] {
        let n_text = n.to_string();
        let traced = Traced::start(
            tcpwatch,
            &[
                "--kind",
                "all",
                "--netns",
                &netns.to_string(),
                "--max-sockets",
                &n_text,
            ],
        )?;
        let idle_rss = traced.usage()?.rss;
        let (socks, flows) = (map_id("SOCK_OWNERS")?, map_id("FLOW_OWNERS")?);
        let owner = OwnerRecord::default();
        fill(socks, n, |i| {
            (0xffff_8880_0000_0000u64 + u64::from(i) * 2048, owner)
        })?;
        fill(flows, n, |i| {
            let mut key = FlowKey {
                netns,
                local_port: (i % 60_000) as u16 + 1024,
                remote_port: 80,
                ..FlowKey::default()
            };
            key.local_addr[12..].copy_from_slice(&(0x0a00_0000 + i / 60_000).to_be_bytes());
            (key, owner)
        })?;
        let kernel = memlock(socks)? + memlock(flows)?;
        // Real connections through the flow history: paced below storm mode
        // so every one is recorded.
        let args = vec![
            "refused".to_owned(),
            "127.0.0.1:9".to_owned(),
            seconds.to_string(),
            "--rate=3000".to_owned(),
        ];
        let children = (0..2)
            .map(|_| load::spawn(&args))
            .collect::<Result<Vec<_>>>()?;
        let connects = load::total(children)?;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let usage = traced.usage()?;
        let stats = traced.stop()?;
        rows.push(vec![
            n_text.clone(),
            format!("{:.1}", kernel as f64 / (1 << 20) as f64),
            format!("{:.0}", kernel as f64 / (2.0 * f64::from(n))),
            connects.to_string(),
            stat(&stats, &["evicted_flows"]).to_string(),
            stat(&stats, &["storms"]).to_string(),
            format!("{:.1}", idle_rss as f64 / (1 << 20) as f64),
            format!("{:.1}", usage.rss as f64 / (1 << 20) as f64),
            format!("{:.1}", usage.peak_rss as f64 / (1 << 20) as f64),
        ]);
    }
    report.table(
        "Memory with many tracked sockets",
        &[
            "--max-sockets (both owner tables filled)",
            "kernel tables MiB",
            "kernel bytes per entry",
            "real connections traced",
            "flow histories evicted",
            "storms",
            "RSS idle MiB",
            "RSS after MiB",
            "peak RSS MiB",
        ],
        rows,
    );
    Ok(())
}
