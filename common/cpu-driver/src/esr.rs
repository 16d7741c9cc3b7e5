//! Decoding the Exception Syndrome Register (Arm ARM D17.2.37) into words a
//! student can act on: what kind of exception, and for aborts what went
//! wrong at which translation level and whether it was a write.

use core::fmt;

/// Exception classes (ESR_ELx.EC) the kernel distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Unknown,
    WfxTrap,
    FpAccess,
    IllegalState,
    Svc64,
    SysRegTrap,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    FpException,
    SError,
    Breakpoint,
    Brk,
    Other(u8),
}

impl Class {
    pub fn from_ec(ec: u8) -> Class {
        match ec {
            0x00 => Class::Unknown,
            0x01 => Class::WfxTrap,
            0x07 => Class::FpAccess,
            0x0e => Class::IllegalState,
            0x15 => Class::Svc64,
            0x18 => Class::SysRegTrap,
            0x20 => Class::InstructionAbortLower,
            0x21 => Class::InstructionAbortSame,
            0x22 => Class::PcAlignment,
            0x24 => Class::DataAbortLower,
            0x25 => Class::DataAbortSame,
            0x26 => Class::SpAlignment,
            0x2c => Class::FpException,
            0x2f => Class::SError,
            0x30 | 0x31 => Class::Breakpoint,
            0x3c => Class::Brk,
            other => Class::Other(other),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Class::Unknown => "undefined instruction",
            Class::WfxTrap => "trapped WFI/WFE",
            Class::FpAccess => "trapped FP/SIMD access",
            Class::IllegalState => "illegal execution state",
            Class::Svc64 => "SVC",
            Class::SysRegTrap => "trapped system register access",
            Class::InstructionAbortLower | Class::InstructionAbortSame => "instruction abort",
            Class::PcAlignment => "misaligned PC",
            Class::DataAbortLower | Class::DataAbortSame => "data abort",
            Class::SpAlignment => "misaligned SP",
            Class::FpException => "floating-point exception",
            Class::SError => "SError",
            Class::Breakpoint => "breakpoint",
            Class::Brk => "BRK instruction",
            Class::Other(_) => "other exception",
        }
    }
}

/// A decoded syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome(pub u64);

impl Syndrome {
    #[inline]
    pub fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    #[inline]
    pub fn class(self) -> Class {
        Class::from_ec(self.ec())
    }

    #[inline]
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The immediate of an SVC.
    #[inline]
    pub fn svc_immediate(self) -> u16 {
        self.iss() as u16
    }

    /// For aborts: the fault status code (DFSC/IFSC).
    pub fn fault_status(self) -> u8 {
        (self.iss() & 0x3f) as u8
    }

    /// For data aborts: was it a write (WnR)?
    pub fn is_write(self) -> bool {
        self.iss() & (1 << 6) != 0
    }

    fn is_abort(self) -> bool {
        matches!(
            self.class(),
            Class::DataAbortLower | Class::DataAbortSame | Class::InstructionAbortLower | Class::InstructionAbortSame
        )
    }
}

/// Abort fault status codes (DFSC/IFSC) as words and a translation level.
pub fn fault_status(code: u8) -> (&'static str, Option<u8>) {
    let level = Some(code & 3);
    match code & 0x3c {
        0x00 => ("address size fault", level),
        0x04 => ("translation fault", level),
        0x08 => ("access flag fault", level),
        0x0c => ("permission fault", level),
        0x10 if code == 0x10 => ("synchronous external abort", None),
        0x20 if code == 0x21 => ("alignment fault", None),
        0x30 if code == 0x30 => ("TLB conflict", None),
        _ => ("other fault", None),
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (EC {:#04x}", self.class().describe(), self.ec())?;
        if self.is_abort() {
            let (what, level) = fault_status(self.fault_status());
            write!(f, ", {what}")?;
            if let Some(l) = level {
                write!(f, " at level {l}")?;
            }
            if matches!(self.class(), Class::DataAbortLower | Class::DataAbortSame) {
                f.write_str(if self.is_write() { ", on a write" } else { ", on a read" })?;
            }
        }
        if self.class() == Class::Svc64 {
            write!(f, ", immediate {}", self.svc_immediate())?;
        }
        write!(f, ", ESR {:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn decodes_the_faults_the_kernel_reports() {
        // Null read from EL0: data abort, translation fault at level 0.
        let s = Syndrome(0x9200_0004);
        assert_eq!(s.class(), Class::DataAbortLower);
        assert_eq!(s.to_string(), "data abort (EC 0x24, translation fault at level 0, on a read, ESR 0x92000004)");
        // Write to read-only text: permission fault at level 3, write.
        let s = Syndrome(0x9200_004f);
        assert!(s.is_write());
        assert!(s.to_string().contains("permission fault at level 3, on a write"));
        // Execute from a non-executable page.
        let s = Syndrome(0x8200_000f);
        assert_eq!(s.class(), Class::InstructionAbortLower);
        assert!(s.to_string().contains("instruction abort") && s.to_string().contains("permission fault at level 3"));
        assert_eq!(Syndrome(0x0200_0000).class(), Class::Unknown);
        assert_eq!(Syndrome(0x9a00_0000).class(), Class::SpAlignment);
        let svc = Syndrome(0x5600_002a);
        assert_eq!((svc.class(), svc.svc_immediate()), (Class::Svc64, 42));
        assert!(svc.to_string().contains("immediate 42"));
        assert_eq!(Syndrome(0xfc00_0000).class(), Class::Other(0x3f));
    }
}
