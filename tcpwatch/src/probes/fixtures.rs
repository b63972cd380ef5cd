//! Detection, plan, names and layouts checked against real kernels: tracefs
//! formats, feature facts and BTF captured from Debian 6.1 and 6.12 (booted
//! under QEMU) and the 6.18 host, in `tests/fixtures/kernels/` (see its README).

use std::{collections::BTreeSet, fs, path::PathBuf};

use tcpwatch_common::layout::ABSENT;

use super::{
    btf::KernelBtf,
    features::{FUNCTIONS, Features},
    kernel_enums::{KernelNames, NameSource},
    plan::{AttachPoint, ResetCoverage, Role, Wants, plan, plan_for},
    tracefs::Tracefs,
};

const V6_1: &str = "6.1.0-56-amd64";
const V6_12: &str = "6.12.117+deb12-amd64";
const V6_18: &str = "6.18.44-fc-v769";

fn dir(release: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernels")
        .join(release)
}

/// Features of a fixture kernel: its tracefs tree plus `features.txt` facts.
fn features(release: &str) -> Features {
    let text = fs::read_to_string(dir(release).join("features.txt")).expect("features.txt");
    let fact = |key: &str| text.lines().any(|l| l == format!("{key}=yes"));
    let functions: BTreeSet<String> = FUNCTIONS
        .iter()
        .filter(|f| fact(&format!("kallsyms_{f}")))
        .map(|f| (*f).to_owned())
        .collect();
    Features::from_tracefs(
        &Tracefs::at(dir(release)),
        release.to_owned(),
        fact("btf"),
        fact("kprobe_pmu") || fact("kprobe_events"),
        functions,
    )
    .expect("fixture formats parse")
}

fn btf(release: &str) -> KernelBtf {
    let compressed = fs::read(dir(release).join("btf/vmlinux.zst")).expect("btf fixture");
    let bytes = zstd::decode_all(&compressed[..]).expect("zstd");
    KernelBtf::from_bytes(&bytes).expect("BTF parses")
}

fn sent_points(release: &str) -> (Vec<String>, ResetCoverage) {
    let plan = plan(&features(release)).expect("plan");
    let points = plan
        .steps
        .iter()
        .filter(|s| s.role == Role::ResetsSent)
        .map(|s| s.point.to_string())
        .collect();
    (points, plan.reset_coverage)
}

#[test]
fn debian_6_1_uses_kprobes_for_resets() {
    let (points, coverage) = sent_points(V6_1);
    assert_eq!(
        points,
        [
            "kprobe:tcp_v4_send_reset",
            "kprobe:tcp_v6_send_reset",
            "kprobe:tcp_send_active_reset"
        ]
    );
    assert_eq!(coverage, ResetCoverage::Complete);
    let f = features(V6_1);
    assert!(!f.send_reset_covers_all());
    // The pre-6.10 layout: host-order ports, IPv4 and IPv6 arrays, family.
    let reset = f.send_reset.as_ref().unwrap().layout();
    assert!(!reset.reason.present());
    assert_eq!((reset.saddr.size, reset.saddr_v6.size), (4, 16));
    assert!(reset.sport.present() && reset.family.present());
}

#[test]
fn debian_6_12_and_host_6_18_use_the_tracepoint() {
    for release in [V6_12, V6_18] {
        let (points, coverage) = sent_points(release);
        assert_eq!(points, ["tracepoint:tcp:tcp_send_reset"], "{release}");
        assert_eq!(coverage, ResetCoverage::Complete);
        let reset = features(release).send_reset.unwrap().layout();
        assert_eq!(
            (reset.reason.offset, reset.saddr.size),
            (28, 28),
            "{release}"
        );
        assert!(!reset.sport.present());
    }
}

#[test]
fn every_kernel_gets_states_received_resets_and_accept() {
    for release in [V6_1, V6_12, V6_18] {
        let plan = plan(&features(release)).unwrap();
        let has = |role, point: &str| {
            plan.steps
                .iter()
                .any(|s| s.role == role && s.point.to_string() == point)
        };
        assert!(
            has(Role::States, "tracepoint:sock:inet_sock_set_state"),
            "{release}"
        );
        assert!(
            has(Role::ResetsReceived, "tracepoint:tcp:tcp_receive_reset"),
            "{release}"
        );
        assert!(
            has(Role::AcceptOwner, "tracepoint:syscalls:sys_exit_accept4"),
            "{release}"
        );
        let state = features(release).set_state.unwrap().layout();
        assert_eq!(
            state.protocol.size, 2,
            "{release}: __u16 protocol since 5.6"
        );
        let received = features(release).receive_reset.unwrap().layout();
        assert!(received.family.present() && received.saddr_v6.present());
        let accept = features(release).accept4_exit.unwrap().layout();
        assert_eq!(accept.ret.size, 8);
    }
}

#[test]
fn the_host_has_no_kprobes_and_no_kprobe_step() {
    let plan = plan(&features(V6_18)).unwrap();
    assert!(!features(V6_18).kprobes);
    assert!(
        plan.steps
            .iter()
            .all(|s| !matches!(s.point, AttachPoint::Kprobe { .. }))
    );
}

#[test]
fn btf_layouts_resolve_on_every_kernel() {
    for release in [V6_1, V6_12, V6_18] {
        let layout = btf(release)
            .kernel_layout()
            .unwrap_or_else(|e| panic!("{release}: {e}"));
        assert_eq!(
            (layout.skc_daddr, layout.skc_rcv_saddr),
            (0, 4),
            "{release}"
        );
        assert_ne!(layout.skc_v6_daddr, ABSENT, "{release}");
        assert_ne!(layout.task_files, ABSENT, "{release}");
    }
    // The layouts really differ between kernels: nothing here is a constant.
    let a = btf(V6_1).kernel_layout().unwrap();
    let b = btf(V6_18).kernel_layout().unwrap();
    assert_ne!(a, b, "6.1 and 6.18 struct layouts differ");
}

#[test]
fn names_per_kernel() {
    for release in [V6_1, V6_12, V6_18] {
        let f = features(release);
        let names = KernelNames::resolve(
            Some(&btf(release)),
            f.set_state.as_ref(),
            f.send_reset.as_ref(),
        )
        .unwrap();
        assert_eq!(names.states_source, NameSource::Btf);
        let states = names.tcp_states().unwrap();
        assert_eq!(names.state(states.established), Some("ESTABLISHED"));
        // Without BTF the print fmt of inet_sock_set_state gives the same table.
        let fallback =
            KernelNames::resolve(None, f.set_state.as_ref(), f.send_reset.as_ref()).unwrap();
        assert_eq!(fallback.tcp_states().unwrap(), states, "{release}");
    }
    let old = features(V6_1);
    let names = KernelNames::resolve(
        Some(&btf(V6_1)),
        old.set_state.as_ref(),
        old.send_reset.as_ref(),
    )
    .unwrap();
    assert_eq!(names.reasons_source, None, "6.1 has no sk_rst_reason");
    for release in [V6_12, V6_18] {
        let f = features(release);
        let names = KernelNames::resolve(
            Some(&btf(release)),
            f.set_state.as_ref(),
            f.send_reset.as_ref(),
        )
        .unwrap();
        assert_eq!(names.reason(1), Some("NO_SOCKET"), "{release}");
        assert!(
            names.has_reason("TCP_ABORT_ON_CLOSE"),
            "{release}: active reasons since 6.12"
        );
        // BTF and the tracepoint agree on every number.
        let from_format =
            KernelNames::resolve(None, f.set_state.as_ref(), f.send_reset.as_ref()).unwrap();
        for raw in 0..32 {
            assert_eq!(
                names.reason(raw),
                from_format.reason(raw),
                "{release} reason {raw}"
            );
        }
    }
}

#[test]
fn drop_hook_and_its_layout_per_kernel() {
    // (reason offset, rx_sk present, protocol offset)
    for (release, reason, rx_sk, protocol) in [
        (V6_1, 28, false, 24),
        (V6_12, 36, true, 32),
        (V6_18, 36, true, 32),
    ] {
        let f = features(release);
        assert!(f.drops_have_reason(), "{release}");
        assert_eq!(f.drops_have_socket(), rx_sk, "{release}");
        let layout = f.kfree_skb.as_ref().unwrap().layout();
        assert_eq!(
            (
                layout.reason.offset,
                layout.protocol.offset,
                layout.skbaddr.offset
            ),
            (reason, protocol, 8),
            "{release}"
        );
        assert_eq!(layout.rx_sk.present(), rx_sk, "{release}");
        let default = plan(&f).unwrap();
        assert!(
            default.steps.iter().all(|s| s.role != Role::Drops),
            "{release}: drops are opt-in"
        );
        let asked = plan_for(
            &f,
            Wants {
                drops: true,
                ..Wants::default()
            },
        )
        .unwrap();
        let drops: Vec<_> = asked
            .steps
            .iter()
            .filter(|s| s.role == Role::Drops)
            .map(|s| s.point.to_string())
            .collect();
        assert_eq!(drops, ["tracepoint:skb:kfree_skb"], "{release}");
    }
}

#[test]
fn drop_reason_names_per_kernel() {
    for release in [V6_1, V6_12, V6_18] {
        let f = features(release);
        let mut names = KernelNames::resolve(
            Some(&btf(release)),
            f.set_state.as_ref(),
            f.send_reset.as_ref(),
        )
        .unwrap();
        names.resolve_drop_reasons(Some(&btf(release)), f.kfree_skb.as_ref());
        assert_eq!(names.drop_reasons_source, Some(NameSource::Btf));
        let mut fallback = names.clone();
        fallback.resolve_drop_reasons(None, f.kfree_skb.as_ref());
        assert_eq!(
            fallback.drop_reasons_source,
            Some(NameSource::TracepointFormat)
        );
        // BTF and the print fmt agree on every number the print fmt lists.
        for raw in 1..100 {
            if let Some(name) = fallback.drop_reason(raw) {
                assert_eq!(names.drop_reason(raw), Some(name), "{release} {raw}");
            }
        }
    }
    let name_of = |release: &str, name: &str| {
        let mut n = KernelNames::resolve(Some(&btf(release)), None, None).unwrap();
        n.resolve_drop_reasons(Some(&btf(release)), None);
        (1..200).find(|raw| n.drop_reason(*raw) == Some(name))
    };
    // The numbers move between kernels: nothing here is a constant.
    assert_eq!(name_of(V6_1, "NO_SOCKET"), Some(2));
    assert_eq!(name_of(V6_12, "NO_SOCKET"), Some(3));
    assert_eq!(name_of(V6_1, "TCP_LISTEN_OVERFLOW"), None);
    assert_eq!(name_of(V6_12, "TCP_LISTEN_OVERFLOW"), None);
    assert_eq!(name_of(V6_18, "TCP_LISTEN_OVERFLOW"), Some(40));
}

#[test]
fn listen_backlog_hook_on_the_host_fixture() {
    let f = features(V6_18);
    let layout = f.listen_enter.as_ref().unwrap().layout();
    assert_eq!((layout.fd.offset, layout.backlog.offset), (16, 24));
    assert_eq!((layout.fd.size, layout.backlog.size), (8, 8));
    let p = plan(&f).unwrap();
    assert!(p.steps.iter().any(|s| s.role == Role::ListenBacklog
        && s.point.to_string() == "tracepoint:syscalls:sys_enter_listen"));
}
