//! The boards: the only place in the kit that names a physical address.
//!
//! A [`Board`] is plain data: where RAM, the console UART, the LED's GPIO
//! block and the GIC sit, where the kernel image is linked, and how QEMU (if
//! at all) runs the board. Target code reaches the board it was built for as
//! [`BOARD`], chosen with exactly one cargo feature; host tools (`xtask`, the
//! grading runner) see every board through [`ALL`] and [`by_name`].
//!
//! Drivers for M0 are not here: M0 writes its own (the course's exercise)
//! against the register maps in `devices`. What is not a fact about a board
//! (the PSCI conduit, RAM size) is read from the device tree at boot; the
//! PSCI definitions for doing so are in [`psci`].

#![no_std]

pub mod console;
pub mod devicetree;
#[cfg(all(target_os = "none", any(feature = "qemu-virt", feature = "imx8mp-evk", feature = "imx8x-colibri")))]
pub mod gic;
pub mod psci;

/// Which UART IP a console is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// ARM PrimeCell PL011.
    Pl011,
    /// NXP i.MX UART.
    ImxUart,
    /// NXP Low-Power UART.
    Lpuart,
}

/// Which GPIO IP drives the LED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpioKind {
    /// ARM PrimeCell PL061.
    Pl061,
    /// NXP i.MX GPIO.
    ImxGpio,
}

/// A physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    pub const fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    pub kind: UartKind,
    pub regs: Region,
    /// Which of the SoC's UARTs this is (0-based), so QEMU's `-serial`
    /// options can route the host console to it.
    pub index: usize,
}

/// The user LED: one pin of a GPIO block, active high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Led {
    pub kind: GpioKind,
    pub regs: Region,
    pub pin: u32,
}

/// GICv3 distributor and redistributor frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    pub distributor: Region,
    pub redistributors: Region,
}

/// How QEMU emulates a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// `-machine` value (without options the runner adds).
    pub machine: &'static str,
    pub cpu: &'static str,
    pub memory_mib: u64,
    /// QEMU builds the device tree itself (`virt`); otherwise the kit
    /// generates one from this description and passes it with `-dtb`.
    pub provides_dtb: bool,
    /// The oldest QEMU that emulates the board.
    pub min_version: (u32, u32),
}

/// Everything the kit knows about a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The name used by `--board` and the cargo feature.
    pub name: &'static str,
    pub description: &'static str,
    /// Device-tree `compatible` of the root node (most specific first).
    pub compatible: &'static [&'static str],
    /// RAM as the board has it (the device tree may say less).
    pub ram: Region,
    /// Where the kernel image is linked and loaded: RAM base + `TEXT_OFFSET`,
    /// as the arm64 Image boot protocol places it.
    pub image_base: u64,
    pub console: Console,
    pub led: Led,
    pub gic: Gic,
    /// `None`: no emulator runs this board here; images build only.
    pub qemu: Option<Qemu>,
}

/// Offset of the kernel image from a 2 MiB-aligned RAM base (the arm64 Image
/// header's `text_offset`). 2 MiB keeps QEMU's boot stub and the device tree
/// it may place at the start of RAM out of the image.
pub const TEXT_OFFSET: u64 = 0x20_0000;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// QEMU `virt` with GICv3 and a Cortex-A57 (facts from QEMU's `hw/arm/virt.c`
/// memory map).
pub const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    description: "QEMU virt, Cortex-A57, GICv3",
    compatible: &["linux,dummy-virt"],
    ram: Region { base: 0x4000_0000, size: 512 * MIB },
    image_base: 0x4000_0000 + TEXT_OFFSET,
    console: Console { kind: UartKind::Pl011, regs: Region { base: 0x0900_0000, size: 0x1000 }, index: 0 },
    led: Led {
        kind: GpioKind::Pl061,
        regs: Region { base: 0x0903_0000, size: 0x1000 },
        // Pin 3 is wired to QEMU's power button; pin 0 is free.
        pin: 0,
    },
    gic: Gic {
        distributor: Region { base: 0x0800_0000, size: 0x1_0000 },
        redistributors: Region { base: 0x080a_0000, size: 0xf6_0000 },
    },
    qemu: Some(Qemu {
        machine: "virt,gic-version=3",
        cpu: "cortex-a57",
        memory_mib: 512,
        provides_dtb: true,
        min_version: (9, 2),
    }),
};

/// NXP i.MX 8M Plus EVK as QEMU emulates it (`hw/arm/fsl-imx8mp.c`): console
/// on UART2 as on the real EVK, status LED on GPIO3 pin 16.
pub const IMX8MP_EVK: Board = Board {
    name: "imx8mp-evk",
    description: "NXP i.MX 8M Plus EVK, Cortex-A53, GICv3",
    compatible: &["fsl,imx8mp-evk", "fsl,imx8mp"],
    ram: Region { base: 0x4000_0000, size: GIB },
    image_base: 0x4000_0000 + TEXT_OFFSET,
    console: Console { kind: UartKind::ImxUart, regs: Region { base: 0x3089_0000, size: 0x1_0000 }, index: 1 },
    led: Led { kind: GpioKind::ImxGpio, regs: Region { base: 0x3022_0000, size: 0x1_0000 }, pin: 16 },
    gic: Gic {
        distributor: Region { base: 0x3880_0000, size: 0x1_0000 },
        redistributors: Region { base: 0x3888_0000, size: 0xc_0000 },
    },
    qemu: Some(Qemu {
        machine: "imx8mp-evk",
        cpu: "cortex-a53",
        memory_mib: 1024,
        provides_dtb: false,
        min_version: (9, 2),
    }),
};

/// Toradex Colibri i.MX 8X on the Aster carrier, the course's board (book
/// ch. 2.11 and 2.13): LPUART3 console, LED4 on GPIO3 pin 23, PSCI via smc
/// from ARM Trusted Firmware, U-Boot loading us with `booti`.
pub const IMX8X_COLIBRI: Board = Board {
    name: "imx8x-colibri",
    description: "Toradex Colibri i.MX 8X, Cortex-A35, GICv3",
    compatible: &["toradex,colibri-imx8x", "fsl,imx8qxp"],
    ram: Region { base: 0x8000_0000, size: GIB },
    image_base: 0x8000_0000 + TEXT_OFFSET,
    console: Console { kind: UartKind::Lpuart, regs: Region { base: 0x5a09_0000, size: 0x1_0000 }, index: 2 },
    led: Led { kind: GpioKind::ImxGpio, regs: Region { base: 0x5d0b_0000, size: 0x1_0000 }, pin: 23 },
    gic: Gic {
        distributor: Region { base: 0x51a0_0000, size: 0x1_0000 },
        redistributors: Region { base: 0x51b0_0000, size: 0xc_0000 },
    },
    qemu: None,
};

/// For build scripts of kernels: the board chosen by cargo feature, and the
/// linker arguments that place the image where the board loads it.
#[cfg(not(target_os = "none"))]
pub mod build {
    extern crate std;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::{ALL, Board, TEXT_OFFSET};

    /// The board whose cargo feature is set, if exactly one is (the crate
    /// itself reports none or several with a compile error).
    pub fn selected_board() -> Option<&'static Board> {
        let selected: Vec<&Board> = ALL
            .iter()
            .filter(|b| {
                std::env::var_os(format!("CARGO_FEATURE_{}", b.name.to_uppercase().replace('-', "_"))).is_some()
            })
            .collect();
        match selected[..] {
            [board] => Some(board),
            _ => None,
        }
    }

    /// Emits `cargo:` lines that link the package's binaries with `script`
    /// for the selected board, when building for the bare-metal target.
    pub fn link_kernel(script: &str) {
        std::println!("cargo:rerun-if-changed={script}");
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
            return;
        }
        let Some(board) = selected_board() else { return };
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let args: [String; 4] = [
            format!("-T{dir}/{script}"),
            format!("--defsym=IMAGE_BASE={:#x}", board.image_base),
            format!("--defsym=TEXT_OFFSET={TEXT_OFFSET:#x}"),
            format!("--defsym=RAM_GIB={:#x}", board.ram.base >> 30),
        ];
        for a in args {
            std::println!("cargo:rustc-link-arg-bins={a}");
        }
    }
}

/// Every board, the default first.
pub const ALL: &[Board] = &[QEMU_VIRT, IMX8MP_EVK, IMX8X_COLIBRI];

/// Looks a board up by its `--board` name.
pub fn by_name(name: &str) -> Option<&'static Board> {
    ALL.iter().find(|b| b.name == name)
}

#[cfg(all(feature = "qemu-virt", not(any(feature = "imx8mp-evk", feature = "imx8x-colibri"))))]
/// The board this image is built for.
pub const BOARD: Board = QEMU_VIRT;
#[cfg(all(feature = "imx8mp-evk", not(any(feature = "qemu-virt", feature = "imx8x-colibri"))))]
/// The board this image is built for.
pub const BOARD: Board = IMX8MP_EVK;
#[cfg(all(feature = "imx8x-colibri", not(any(feature = "qemu-virt", feature = "imx8mp-evk"))))]
/// The board this image is built for.
pub const BOARD: Board = IMX8X_COLIBRI;

#[cfg(any(
    all(feature = "qemu-virt", feature = "imx8mp-evk"),
    all(feature = "qemu-virt", feature = "imx8x-colibri"),
    all(feature = "imx8mp-evk", feature = "imx8x-colibri"),
))]
compile_error!("select exactly one board feature (cargo xtask --board NAME does this)");

#[cfg(all(
    target_os = "none",
    not(any(feature = "qemu-virt", feature = "imx8mp-evk", feature = "imx8x-colibri", feature = "user"))
))]
compile_error!(
    "no board selected: build images with `cargo xtask image STAGE --board NAME`, \
     or pass --features qemu-virt|imx8mp-evk|imx8x-colibri"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(by_name(a.name), Some(a));
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
        assert_eq!(by_name("no-such-board"), None);
    }

    #[test]
    fn images_sit_in_ram_at_the_text_offset() {
        for b in ALL {
            assert!(b.ram.contains(b.image_base), "{}", b.name);
            assert_eq!(b.image_base % (2 * MIB), TEXT_OFFSET % (2 * MIB), "{}", b.name);
            assert_eq!(b.image_base - b.ram.base, TEXT_OFFSET, "{}", b.name);
        }
    }

    #[test]
    fn devices_lie_outside_ram_and_apart() {
        for b in ALL {
            let devs = [b.console.regs, b.led.regs, b.gic.distributor, b.gic.redistributors];
            for (i, d) in devs.iter().enumerate() {
                assert!(!d.overlaps(&b.ram), "{}: device {d:?} in RAM", b.name);
                for e in &devs[i + 1..] {
                    assert!(!d.overlaps(e), "{}: {d:?} overlaps {e:?}", b.name);
                }
            }
            assert!(b.led.pin < 32);
        }
    }

    #[test]
    fn course_board_facts_from_the_book() {
        // Book ch. 2.11 and 2.13.
        assert_eq!(IMX8X_COLIBRI.console.regs.base, 0x5a09_0000);
        assert_eq!(IMX8X_COLIBRI.led.regs.base, 0x5d0b_0000);
        assert_eq!(IMX8X_COLIBRI.led.pin, 23);
        assert_eq!(IMX8X_COLIBRI.qemu, None);
    }
}
