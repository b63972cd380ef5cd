//! Kernel BTF (`/sys/kernel/btf/vmlinux`): struct member offsets and enum names.
//!
//! The programs read kernel structs (`sock_common`, `sk_buff`, the fd table) at
//! offsets resolved here at start-up; nothing is compiled in. Members nested in
//! anonymous unions and structs are found by name and flattened.

use std::path::Path;

use btf_rs::{Btf, Type};
use fallible_iterator::FallibleIterator as _;
use tcpwatch_common::layout::{ABSENT, KernelLayout};

/// The default location of the kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Errors resolving kernel types.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file is missing or unreadable.
    #[error(
        "kernel BTF is not available at {path} ({reason}); tcpwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, or a BTF file for this kernel given with --btf"
    )]
    Unavailable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A struct or member tcpwatch needs is missing or has an unexpected shape.
    #[error("kernel BTF: {0}")]
    Layout(String),
}

/// A member's byte offset and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Byte offset from the start of the outer struct.
    pub offset: u32,
    /// Size of the member's type in bytes.
    pub size: u32,
}

/// The `--btf` value that means: run without BTF.
pub const NO_BTF: &str = "none";

/// Parsed kernel BTF.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    /// Loads BTF from a file (normally [`VMLINUX_BTF`]).
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        let unavailable = |reason: String| BtfError::Unavailable {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(unavailable("no such file".into()));
        }
        Btf::from_file(path)
            .map(|btf| Self { btf })
            .map_err(|e| unavailable(e.to_string()))
    }

    /// Parses BTF from bytes (tests use fixtures of other kernels).
    #[cfg(test)]
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BtfError> {
        Btf::from_bytes(bytes)
            .map(|btf| Self { btf })
            .map_err(|e| BtfError::Unavailable {
                path: "<bytes>".into(),
                reason: e.to_string(),
            })
    }

    /// Offset and size of `path` (dotted members, e.g. `["skc_net", "net"]`) in
    /// `struct <name>`.
    pub fn member(&self, name: &str, path: &[&str]) -> Result<MemberInfo, BtfError> {
        let mut ty = self.struct_named(name)?;
        let mut offset = 0;
        let mut size = 0;
        for (depth, component) in path.iter().enumerate() {
            let (bits, member_ty) = self.find_member(&ty, component).ok_or_else(|| {
                BtfError::Layout(format!(
                    "struct {name} has no member {}",
                    path[..=depth].join(".")
                ))
            })?;
            if bits % 8 != 0 {
                return Err(BtfError::Layout(format!(
                    "{name}.{} is a bitfield",
                    path[..=depth].join(".")
                )));
            }
            offset += bits / 8;
            ty = self.strip_modifiers(member_ty);
            size = self.size_of(&ty);
        }
        Ok(MemberInfo { offset, size })
    }

    /// `(name, value)` of every member of `enum <name>`.
    pub fn enum_named(&self, name: &str) -> Option<Vec<(String, i64)>> {
        self.btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|ty| self.enum_members(&ty))
    }

    /// Members of the (possibly anonymous) enum that has a member called `member`.
    pub fn enum_with_member(&self, member: &str) -> Option<Vec<(String, i64)>> {
        // Enumerator names are not indexed as types: scan the enums.
        let mut types = self.btf.type_iter();
        while let Ok(Some(ty)) = types.next() {
            if let Some(members) = self.enum_members(&ty)
                && members.iter().any(|(n, _)| n == member)
            {
                return Some(members);
            }
        }
        None
    }

    /// Names of the parameters of function `name`, in order, if its prototype
    /// is in this BTF.
    pub fn parameters(&self, name: &str) -> Option<Vec<String>> {
        let func = self
            .btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                Type::Func(f) => Some(f),
                _ => None,
            })?;
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(&func).ok()? else {
            return None;
        };
        Some(
            proto
                .parameters
                .iter()
                .map(|p| self.btf.resolve_name(p).unwrap_or_default())
                .collect(),
        )
    }

    /// The BTF of a loaded module (`/sys/kernel/btf/<module>`), split over this
    /// (vmlinux) BTF.
    pub fn module(&self, module: &str) -> Option<KernelBtf> {
        let path = Path::new("/sys/kernel/btf").join(module);
        Btf::from_split_file(path, &self.btf)
            .ok()
            .map(|btf| Self { btf })
    }

    fn enum_members(&self, ty: &Type) -> Option<Vec<(String, i64)>> {
        match ty {
            Type::Enum(e) => Some(
                e.members
                    .iter()
                    .map(|m| {
                        let value = if e.is_signed() {
                            i64::from(m.val() as i32)
                        } else {
                            i64::from(m.val())
                        };
                        (self.btf.resolve_name(m).unwrap_or_default(), value)
                    })
                    .collect(),
            ),
            Type::Enum64(e) => Some(
                e.members
                    .iter()
                    .map(|m| (self.btf.resolve_name(m).unwrap_or_default(), m.val() as i64))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn struct_named(&self, name: &str) -> Result<Type, BtfError> {
        self.btf
            .resolve_types_by_name(name)
            .ok()
            .and_then(|tys| {
                tys.into_iter()
                    .find(|t| matches!(t, Type::Struct(_) | Type::Union(_)))
            })
            .ok_or_else(|| BtfError::Layout(format!("no struct {name}")))
    }

    /// Finds `name` among the members of a struct/union, descending into anonymous
    /// members. Returns the bit offset from the start of `ty` and the member type.
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u32, Type)> {
        let (Type::Struct(s) | Type::Union(s)) = ty else {
            return None;
        };
        for member in &s.members {
            let member_name = self.btf.resolve_name(member).unwrap_or_default();
            let member_ty = self.btf.resolve_chained_type(member).ok()?;
            if member_name == name {
                return Some((member.bit_offset(), member_ty));
            }
            if member_name.is_empty() {
                let inner = self.strip_modifiers(member_ty);
                if let Some((bits, found)) = self.find_member(&inner, name) {
                    return Some((member.bit_offset() + bits, found));
                }
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip_modifiers(&self, mut ty: Type) -> Type {
        for _ in 0..16 {
            let next = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t),
                Type::Volatile(t) | Type::Const(t) | Type::Restrict(t) => {
                    self.btf.resolve_chained_type(t)
                }
                Type::TypeTag(t) => self.btf.resolve_chained_type(t),
                _ => break,
            };
            match next {
                Ok(next) => ty = next,
                Err(_) => break,
            }
        }
        ty
    }

    fn size_of(&self, ty: &Type) -> u32 {
        match ty {
            Type::Int(i) => i.size() as u32,
            Type::Ptr(_) => 8,
            Type::Enum(e) => e.size() as u32,
            Type::Enum64(e) => e.size() as u32,
            Type::Struct(s) | Type::Union(s) => s.size() as u32,
            Type::Array(a) => {
                let elem = self
                    .btf
                    .resolve_chained_type(a)
                    .map(|t| self.size_of(&self.strip_modifiers(t)))
                    .unwrap_or(0);
                elem * a.len() as u32
            }
            _ => 0,
        }
    }

    /// Resolves every struct member the programs read.
    pub fn kernel_layout(&self) -> Result<KernelLayout, BtfError> {
        let sized = |name: &str, path: &[&str], size: u32| -> Result<u16, BtfError> {
            let m = self.member(name, path)?;
            if m.size != size {
                return Err(BtfError::Layout(format!(
                    "{name}.{} is {} bytes, expected {size}",
                    path.join("."),
                    m.size
                )));
            }
            u16::try_from(m.offset).map_err(|_| {
                BtfError::Layout(format!(
                    "{name}.{} offset {} too large",
                    path.join("."),
                    m.offset
                ))
            })
        };
        // IPv6 members exist only with CONFIG_IPV6; without them IPv6 is absent. The
        // tcp_sock activity fields are extras: without them events lack idle times.
        let optional =
            |name: &str, path: &[&str], size: u32| sized(name, path, size).unwrap_or(ABSENT);
        Ok(KernelLayout {
            skc_family: sized("sock_common", &["skc_family"], 2)?,
            skc_state: sized("sock_common", &["skc_state"], 1)?,
            skc_num: sized("sock_common", &["skc_num"], 2)?,
            skc_dport: sized("sock_common", &["skc_dport"], 2)?,
            skc_rcv_saddr: sized("sock_common", &["skc_rcv_saddr"], 4)?,
            skc_daddr: sized("sock_common", &["skc_daddr"], 4)?,
            skc_v6_rcv_saddr: optional("sock_common", &["skc_v6_rcv_saddr"], 16),
            skc_v6_daddr: optional("sock_common", &["skc_v6_daddr"], 16),
            skc_net: sized("sock_common", &["skc_net", "net"], 8)?,
            net_ns_inum: sized("net", &["ns", "inum"], 4)?,
            skb_head: sized("sk_buff", &["head"], 8)?,
            skb_network_header: sized("sk_buff", &["network_header"], 2)?,
            skb_transport_header: sized("sk_buff", &["transport_header"], 2)?,
            skb_dev: sized("sk_buff", &["dev"], 8)?,
            dev_nd_net: sized("net_device", &["nd_net", "net"], 8)?,
            task_files: sized("task_struct", &["files"], 8)?,
            files_fdt: sized("files_struct", &["fdt"], 8)?,
            fdt_max_fds: sized("fdtable", &["max_fds"], 4)?,
            fdt_fd: sized("fdtable", &["fd"], 8)?,
            file_private_data: sized("file", &["private_data"], 8)?,
            socket_sk: sized("socket", &["sk"], 8)?,
            tcp_mstamp: optional("tcp_sock", &["tcp_mstamp"], 8),
            tcp_bytes_received: optional("tcp_sock", &["bytes_received"], 8),
            tcp_bytes_acked: optional("tcp_sock", &["bytes_acked"], 8),
            task_group_leader: optional("task_struct", &["group_leader"], 8),
            task_comm: optional("task_struct", &["comm"], 16),
            inet_sport: sized("inet_sock", &["inet_sport"], 2)?,
            // Only drops use it (to tell transmit from receive): optional.
            skb_sk: optional("sk_buff", &["sk"], 8),
            // What came before a timeout and the error the owner gets: extras.
            tcp_total_retrans: optional("tcp_sock", &["total_retrans"], 4),
            icsk_retransmits: optional("inet_connection_sock", &["icsk_retransmits"], 1),
            icsk_probes_out: optional("inet_connection_sock", &["icsk_probes_out"], 1),
            icsk_backoff: optional("inet_connection_sock", &["icsk_backoff"], 1),
            icsk_user_timeout: optional("inet_connection_sock", &["icsk_user_timeout"], 4),
            sk_err: optional("sock", &["sk_err"], 4),
            sk_err_soft: optional("sock", &["sk_err_soft"], 4),
            // The syscall number a task entered with: x86-64 keeps it in
            // `orig_ax` (8 bytes; the low 4 are read), arm64 in `syscallno`.
            pt_regs_syscall: sized("pt_regs", &["orig_ax"], 8)
                .or_else(|_| sized("pt_regs", &["syscallno"], 4))
                .unwrap_or(ABSENT),
            // Its first argument: x86-64 `di`; arm64 keeps it in `orig_x0`
            // (`x0` takes the return value).
            pt_regs_arg0: sized("pt_regs", &["di"], 8)
                .or_else(|_| sized("pt_regs", &["orig_x0"], 8))
                .unwrap_or(ABSENT),
            _pad: [0; 3],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<KernelBtf> {
        KernelBtf::load(Path::new(VMLINUX_BTF)).ok()
    }

    #[test]
    fn resolves_host_layout() {
        let Some(btf) = host() else {
            panic!("this test needs {VMLINUX_BTF}");
        };
        let layout = btf.kernel_layout().expect("layout");
        // sock_common starts with the address pair on every kernel since 4.x.
        assert_eq!(layout.skc_daddr, 0);
        assert_eq!(layout.skc_rcv_saddr, 4);
        assert!(layout.skc_state > layout.skc_family);
        assert_ne!(layout.skc_v6_daddr, ABSENT);
    }

    #[test]
    fn reads_anonymous_members_and_enums() {
        let btf = host().expect("BTF");
        // skc_dport lives in an anonymous union inside an anonymous struct.
        let dport = btf.member("sock_common", &["skc_dport"]).unwrap();
        assert_eq!(dport.size, 2);
        let states = btf.enum_with_member("TCP_ESTABLISHED").expect("tcp states");
        assert!(states.contains(&("TCP_ESTABLISHED".to_owned(), 1)));
        let reasons = btf
            .enum_named("sk_rst_reason")
            .expect("sk_rst_reason on 6.10+");
        assert!(reasons.iter().any(|(n, _)| n == "SK_RST_REASON_NO_SOCKET"));
        assert!(btf.member("sock_common", &["no_such_member"]).is_err());
        assert!(btf.member("no_such_struct", &["x"]).is_err());
    }
}
