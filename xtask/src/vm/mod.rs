//! `cargo xtask vm`: the project's tests on Debian kernels under QEMU/TCG.

mod cache;
mod cpio;
mod initramfs;
mod kernels;
mod matrix;
mod qemu;
mod rootfs;
mod suite;
mod vmlinux;

pub use matrix::{Args, run};
