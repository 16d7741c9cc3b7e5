//! A minimal writer of the `newc` cpio format, the format Linux unpacks as
//! an initramfs: regular files and directories, all owned by root.

/// One entry: path (no leading slash), mode (type and permission bits),
/// contents.
pub struct Entry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

pub const DIR: u32 = 0o040_755;
pub const EXEC: u32 = 0o100_755;

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn push(out: &mut Vec<u8>, ino: u32, path: &str, mode: u32, data: &[u8]) {
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, path.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(path.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The archive of `entries`, with the trailer.
pub fn archive(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        push(&mut out, i as u32 + 1, e.path, e.mode, e.data);
    }
    push(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_headers_padded_to_four() {
        let a =
            archive(&[Entry { path: "bin", mode: DIR, data: &[] }, Entry { path: "init", mode: EXEC, data: b"abc" }]);
        assert!(a.starts_with(b"070701"));
        // Header 110 bytes + "bin\0" = 114, padded to 116.
        assert_eq!(&a[110..114], b"bin\0");
        let second = &a[116..];
        assert!(second.starts_with(b"070701"));
        let size = u32::from_str_radix(std::str::from_utf8(&second[54..62]).unwrap(), 16).unwrap();
        assert_eq!(size, 3);
        let mode = u32::from_str_radix(std::str::from_utf8(&second[14..22]).unwrap(), 16).unwrap();
        assert_eq!(mode, EXEC);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 4, 0);
    }
}
