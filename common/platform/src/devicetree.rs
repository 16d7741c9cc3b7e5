//! What a kernel reads from the device tree the boot loader passes: RAM,
//! the boot image (initrd), the PSCI conduit and the boot arguments. One
//! walk over the nodes collects everything, because the `fdt` crate rescans
//! the whole tree for every path lookup (five lookups cost a boot 370k
//! instructions; one walk 80k).

use crate::Region;
use crate::psci::{self, Conduit, NoPsci};

/// Most memory ranges kept.
pub const MEMORY_MAX: usize = 8;

/// Facts from the device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootFacts<'a> {
    /// `/chosen/bootargs`, empty if absent.
    pub bootargs: &'a str,
    /// `/chosen` `linux,initrd-start` .. `linux,initrd-end`, if both are
    /// present and the range is not empty.
    pub initrd: Option<Region>,
    pub psci: Result<Conduit, NoPsci>,
    memory: [Region; MEMORY_MAX],
    memory_count: usize,
}

impl BootFacts<'_> {
    /// RAM ranges from every `memory` node, in tree order (empty ones left
    /// out, at most [`MEMORY_MAX`]).
    pub fn memory(&self) -> &[Region] {
        &self.memory[..self.memory_count]
    }

    /// Whether the boot arguments contain `word` exactly.
    pub fn has_arg(&self, word: &str) -> bool {
        self.bootargs.split_whitespace().any(|w| w == word)
    }
}

/// A property value of one or two big-endian cells.
fn cells(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => Some(u32::from_be_bytes(v.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// Reads the facts in one walk over the tree.
pub fn read<'a>(fdt: &fdt::Fdt<'a>) -> BootFacts<'a> {
    let mut facts = BootFacts {
        bootargs: "",
        initrd: None,
        psci: Err(NoPsci::NoNode),
        memory: [Region { base: 0, size: 0 }; MEMORY_MAX],
        memory_count: 0,
    };
    for node in fdt.all_nodes() {
        match node.name {
            "chosen" => {
                facts.bootargs = node.property("bootargs").and_then(|p| p.as_str()).unwrap_or("");
                let start = node.property("linux,initrd-start").and_then(|p| cells(p.value));
                let end = node.property("linux,initrd-end").and_then(|p| cells(p.value));
                facts.initrd = match (start, end) {
                    (Some(s), Some(e)) if e > s => Some(Region { base: s, size: e - s }),
                    _ => None,
                };
            }
            "psci" => facts.psci = psci::conduit_from_node(node),
            name if name == "memory" || name.starts_with("memory@") => {
                for r in node.reg().into_iter().flatten() {
                    let size = r.size.unwrap_or(0) as u64;
                    if size > 0 && facts.memory_count < MEMORY_MAX {
                        facts.memory[facts.memory_count] = Region { base: r.starting_address as u64, size };
                        facts.memory_count += 1;
                    }
                }
            }
            _ => {}
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;
    use vm_fdt::FdtWriter;

    struct Tree {
        bootargs: Option<&'static str>,
        initrd: Option<(u64, u64, bool)>,
        psci: bool,
        memory: &'static [(u64, u64)],
    }

    fn build(t: &Tree) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        if let Some(a) = t.bootargs {
            w.property_string("bootargs", a).unwrap();
        }
        if let Some((s, e, wide)) = t.initrd {
            if wide {
                w.property_u64("linux,initrd-start", s).unwrap();
                w.property_u64("linux,initrd-end", e).unwrap();
            } else {
                w.property_u32("linux,initrd-start", s as u32).unwrap();
                w.property_u32("linux,initrd-end", e as u32).unwrap();
            }
        }
        w.end_node(chosen).unwrap();
        if t.psci {
            let p = w.begin_node("psci").unwrap();
            w.property_string_list("compatible", std::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()]).unwrap();
            w.property_string("method", "hvc").unwrap();
            w.end_node(p).unwrap();
        }
        for (base, size) in t.memory {
            let m = w.begin_node(&std::format!("memory@{base:x}")).unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[*base, *size]).unwrap();
            w.end_node(m).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn reads_what_qemu_passes() {
        let dtb = build(&Tree {
            bootargs: Some("semihosting selftest=x"),
            initrd: Some((0x4800_0000, 0x4810_0000, true)),
            psci: true,
            memory: &[(0x4000_0000, 0x2000_0000), (0x1_0000_0000, 0x1000_0000)],
        });
        let f = read(&fdt::Fdt::new(&dtb).unwrap());
        assert!(f.has_arg("semihosting") && f.has_arg("selftest=x") && !f.has_arg("semi"));
        assert_eq!(f.initrd, Some(Region { base: 0x4800_0000, size: 0x10_0000 }));
        assert_eq!(f.psci, Ok(Conduit::Hvc));
        assert_eq!(
            f.memory(),
            [Region { base: 0x4000_0000, size: 0x2000_0000 }, Region { base: 0x1_0000_0000, size: 0x1000_0000 }]
        );
    }

    #[test]
    fn one_cell_initrd_and_missing_pieces() {
        let dtb =
            build(&Tree { bootargs: None, initrd: Some((0x4800_0000, 0x4800_1000, false)), psci: false, memory: &[] });
        let f = read(&fdt::Fdt::new(&dtb).unwrap());
        assert_eq!(f.bootargs, "");
        assert_eq!(f.initrd, Some(Region { base: 0x4800_0000, size: 0x1000 }));
        assert_eq!(f.psci, Err(NoPsci::NoNode));
        assert!(f.memory().is_empty());
        let dtb = build(&Tree { bootargs: None, initrd: Some((0x5000, 0x5000, true)), psci: false, memory: &[(0, 0)] });
        let f = read(&fdt::Fdt::new(&dtb).unwrap());
        assert_eq!(f.initrd, None, "an empty initrd is none");
        assert!(f.memory().is_empty(), "an empty memory range is left out");
    }
}
