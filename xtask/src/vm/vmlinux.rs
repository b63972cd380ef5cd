//! The uncompressed kernel (`vmlinux`) inside a bzImage, so QEMU can boot it
//! through its PVH entry point: under TCG, the guest's own decompressor (xz for
//! Debian's 6.1) costs seconds on every boot.
//!
//! The x86 boot protocol (Documentation/arch/x86/boot.rst, protocol 2.08+) says
//! where the compressed payload is: `payload_offset` and `payload_length` in the
//! setup header, relative to the protected-mode code that follows the
//! `setup_sects` real-mode sectors.

use std::{
    fs,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Offset of `setup_sects` in the bzImage.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of the `HdrS` magic.
const HEADER_MAGIC: usize = 0x202;
/// Offset of the boot protocol version.
const PROTOCOL_VERSION: usize = 0x206;
/// Offset of `payload_offset` (u32), followed by `payload_length` (u32).
const PAYLOAD_OFFSET: usize = 0x248;

/// Writes the ELF vmlinux inside `bzimage` to `out`.
pub fn extract(bzimage: &Path, out: &Path) -> Result<()> {
    let image = fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let payload = payload(&image).with_context(|| format!("{}", bzimage.display()))?;
    let tool = decompressor(payload)
        .with_context(|| format!("{}: unknown payload compression", bzimage.display()))?;
    let elf = decompress(tool, payload)?;
    if !elf.starts_with(b"\x7fELF") {
        bail!(
            "{}: the decompressed payload is not an ELF vmlinux",
            bzimage.display()
        );
    }
    let tmp = out.with_extension("tmp");
    fs::write(&tmp, &elf).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))
}

fn u32_at(image: &[u8], at: usize) -> Option<u32> {
    let bytes = image.get(at..at + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The compressed payload of a bzImage.
fn payload(image: &[u8]) -> Result<&[u8]> {
    if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS setup header)");
    }
    let version = image
        .get(PROTOCOL_VERSION..PROTOCOL_VERSION + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or(0);
    if version < 0x0208 {
        bail!("boot protocol {version:#x} has no payload_offset (needs 2.08+)");
    }
    // setup_sects 0 means 4 (boot.rst).
    let sects = match image.get(SETUP_SECTS).copied().unwrap_or(0) {
        0 => 4,
        n => usize::from(n),
    };
    let protected_mode = (sects + 1) * 512;
    let (Some(offset), Some(length)) = (
        u32_at(image, PAYLOAD_OFFSET),
        u32_at(image, PAYLOAD_OFFSET + 4),
    ) else {
        bail!("truncated setup header");
    };
    let start = protected_mode + offset as usize;
    image
        .get(start..start + length as usize)
        .context("payload_offset/payload_length point outside the file")
}

/// The command that decompresses a payload, from its magic bytes.
fn decompressor(payload: &[u8]) -> Option<&'static [&'static str]> {
    const TOOLS: &[(&[u8], &[&str])] = &[
        (b"\xfd7zXZ\x00", &["xz", "-dc"]),
        (b"\x28\xb5\x2f\xfd", &["zstd", "-dc"]),
        (b"\x1f\x8b", &["gzip", "-dc"]),
        (b"\x02\x21\x4c\x18", &["lz4", "-dc"]),
    ];
    TOOLS
        .iter()
        .find(|(magic, _)| payload.starts_with(magic))
        .map(|(_, tool)| *tool)
}

/// Runs `tool` on `input`. The kernel appends the decompressed size after the
/// stream, which some tools report as trailing garbage: success is judged by the
/// output, not the exit status.
fn decompress(tool: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {} (apt-get install xz-utils zstd)", tool[0]))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output()?;
    let _ = writer.join();
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(sects: u8, offset: u32, payload: &[u8]) -> Vec<u8> {
        let pm = (usize::from(if sects == 0 { 4 } else { sects }) + 1) * 512;
        let mut image = vec![0u8; pm + offset as usize + payload.len()];
        image[SETUP_SECTS] = sects;
        image[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        image[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&0x020f_u16.to_le_bytes());
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&offset.to_le_bytes());
        image[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 8]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let start = pm + offset as usize;
        image[start..].copy_from_slice(payload);
        image
    }

    #[test]
    fn finds_the_payload_from_the_setup_header() {
        let img = image(30, 0x2cc, b"\xfd7zXZ\x00rest");
        assert_eq!(payload(&img).unwrap(), b"\xfd7zXZ\x00rest");
        assert_eq!(
            decompressor(payload(&img).unwrap()),
            Some(&["xz", "-dc"][..])
        );
        // setup_sects 0 means 4.
        let img = image(0, 16, b"\x28\xb5\x2f\xfd..");
        assert_eq!(
            decompressor(payload(&img).unwrap()),
            Some(&["zstd", "-dc"][..])
        );
    }

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        assert!(payload(b"\x7fELF and more").is_err());
        let mut img = image(30, 0x2cc, b"x");
        let n = img.len();
        img[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 8].copy_from_slice(&(n as u32).to_le_bytes());
        assert!(payload(&img).is_err());
    }
}
