//! PSCI (ARM DEN 0022): function numbers, return codes, and which conduit
//! (`hvc` or `smc`) reaches the firmware. The conduit is a fact of how the
//! board was booted, not of the board: QEMU `virt` answers `hvc` when we
//! enter at EL1 and `smc` when we enter at EL2, so it is read from the
//! device tree's `/psci` node (`method`), never assumed.
//!
//! Definitions only: making the call (`hvc`/`smc`) is the caller's, so M0
//! keeps its exercise and the kernel its own trap path.

use core::fmt;

/// PSCI 0.2+ function identifiers (SMC32 calling convention).
pub mod function {
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
}

/// The instruction that traps to the PSCI implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    pub fn name(self) -> &'static str {
        match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        }
    }
}

/// A PSCI return code other than SUCCESS (DEN 0022 table 5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciError {
    NotSupported,
    InvalidParameters,
    Denied,
    AlreadyOn,
    OnPending,
    InternalFailure,
    NotPresent,
    Disabled,
    InvalidAddress,
    Other(i64),
}

impl PsciError {
    pub fn from_code(code: i64) -> Self {
        match code {
            -1 => PsciError::NotSupported,
            -2 => PsciError::InvalidParameters,
            -3 => PsciError::Denied,
            -4 => PsciError::AlreadyOn,
            -5 => PsciError::OnPending,
            -6 => PsciError::InternalFailure,
            -7 => PsciError::NotPresent,
            -8 => PsciError::Disabled,
            -9 => PsciError::InvalidAddress,
            other => PsciError::Other(other),
        }
    }
}

impl fmt::Display for PsciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PsciError::NotSupported => f.write_str("NOT_SUPPORTED"),
            PsciError::InvalidParameters => f.write_str("INVALID_PARAMETERS"),
            PsciError::Denied => f.write_str("DENIED"),
            PsciError::AlreadyOn => f.write_str("ALREADY_ON"),
            PsciError::OnPending => f.write_str("ON_PENDING"),
            PsciError::InternalFailure => f.write_str("INTERNAL_FAILURE"),
            PsciError::NotPresent => f.write_str("NOT_PRESENT"),
            PsciError::Disabled => f.write_str("DISABLED"),
            PsciError::InvalidAddress => f.write_str("INVALID_ADDRESS"),
            PsciError::Other(c) => write!(f, "unknown code {c}"),
        }
    }
}

/// Why no usable PSCI was found in the device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPsci {
    /// The boot loader passed no (valid) device tree.
    NoDeviceTree,
    /// The tree has no `/psci` node: the firmware offers no PSCI.
    NoNode,
    /// `/psci` has no `method` property.
    NoMethod,
    /// `method` is neither `hvc` nor `smc`.
    UnknownMethod,
    /// Only PSCI 0.1 (`compatible = "arm,psci"`), which has no SYSTEM_OFF or
    /// SYSTEM_RESET.
    Version01Only,
}

impl fmt::Display for NoPsci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoPsci::NoDeviceTree => "no valid device tree was passed at boot",
            NoPsci::NoNode => "the device tree has no /psci node",
            NoPsci::NoMethod => "/psci has no \"method\" property",
            NoPsci::UnknownMethod => "/psci \"method\" is neither \"hvc\" nor \"smc\"",
            NoPsci::Version01Only => "the firmware offers only PSCI 0.1 (no SYSTEM_OFF/SYSTEM_RESET)",
        })
    }
}

/// Reads the PSCI conduit from a device tree.
pub fn conduit_from_fdt(fdt: &fdt::Fdt<'_>) -> Result<Conduit, NoPsci> {
    conduit_from_node(fdt.find_node("/psci").ok_or(NoPsci::NoNode)?)
}

/// Reads the PSCI conduit from the `/psci` node itself (for callers that
/// walk the tree once instead of searching it per property).
pub fn conduit_from_node(node: fdt::node::FdtNode<'_, '_>) -> Result<Conduit, NoPsci> {
    let v02 = node.compatible().is_some_and(|c| c.all().any(|s| s != "arm,psci" && s.starts_with("arm,psci-")));
    if !v02 {
        return Err(NoPsci::Version01Only);
    }
    match node.property("method").ok_or(NoPsci::NoMethod)?.as_str() {
        Some("hvc") => Ok(Conduit::Hvc),
        Some("smc") => Ok(Conduit::Smc),
        _ => Err(NoPsci::UnknownMethod),
    }
}

/// Splits a PSCI_VERSION result into (major, minor).
pub fn version(raw: u32) -> (u16, u16) {
    ((raw >> 16) as u16, raw as u16)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use vm_fdt::FdtWriter;

    fn tree(psci: Option<(&[&str], Option<&str>)>) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        if let Some((compatible, method)) = psci {
            let n = w.begin_node("psci").unwrap();
            let compatible: Vec<String> = compatible.iter().map(|s| s.to_string()).collect();
            w.property_string_list("compatible", compatible).unwrap();
            if let Some(m) = method {
                w.property_string("method", m).unwrap();
            }
            w.end_node(n).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn conduit(dtb: &[u8]) -> Result<Conduit, NoPsci> {
        conduit_from_fdt(&fdt::Fdt::new(dtb).unwrap())
    }

    #[test]
    fn reads_hvc_and_smc() {
        let qemu_style = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];
        assert_eq!(conduit(&tree(Some((&qemu_style, Some("hvc"))))), Ok(Conduit::Hvc));
        assert_eq!(conduit(&tree(Some((&qemu_style, Some("smc"))))), Ok(Conduit::Smc));
        assert_eq!(conduit(&tree(Some((&["arm,psci-0.2"], Some("smc"))))), Ok(Conduit::Smc));
    }

    #[test]
    fn rejects_what_cannot_power_off() {
        assert_eq!(conduit(&tree(None)), Err(NoPsci::NoNode));
        assert_eq!(conduit(&tree(Some((&["arm,psci-1.0"], None)))), Err(NoPsci::NoMethod));
        assert_eq!(conduit(&tree(Some((&["arm,psci-1.0"], Some("svc"))))), Err(NoPsci::UnknownMethod));
        assert_eq!(conduit(&tree(Some((&["arm,psci"], Some("smc"))))), Err(NoPsci::Version01Only));
    }

    #[test]
    fn decodes_versions_and_errors() {
        assert_eq!(version(0x0001_0001), (1, 1));
        assert_eq!(version(0x0000_0002), (0, 2));
        assert_eq!(PsciError::from_code(-1), PsciError::NotSupported);
        assert_eq!(PsciError::from_code(-9), PsciError::InvalidAddress);
        assert_eq!(PsciError::from_code(-42), PsciError::Other(-42));
        assert_eq!(PsciError::from_code(-3).to_string(), "DENIED");
    }
}
