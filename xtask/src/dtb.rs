//! Device trees for boards QEMU generates none for (`imx8mp-evk`), built
//! from the board's description in `platform` so no fact is written twice.
//! It describes what the kit uses: memory, cores with PSCI, the GIC, the
//! generic timer, the console UART and the LED's GPIO block. QEMU fills in
//! `/memory` and `/psci` from its own configuration on top of it.

use std::path::PathBuf;

use platform::{Board, GpioKind, UartKind};
use vm_fdt::{FdtWriter, FdtWriterResult};

use crate::root;

const GIC_PHANDLE: u32 = 1;
const GPIO_PHANDLE: u32 = 2;

/// Writes the tree for `board` with `smp` cores; returns its path.
pub fn write(board: &Board, smp: u32) -> Result<PathBuf, String> {
    let bytes = build(board, smp).map_err(|e| format!("building the device tree for {}: {e}", board.name))?;
    let dir = root().join("target").join("images");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}-smp{smp}.dtb", board.name));
    std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Two-cell address and size, as `#address-cells = #size-cells = 2` wants.
fn reg(regions: &[platform::Region]) -> Vec<u64> {
    regions.iter().flat_map(|r| [r.base, r.size]).collect()
}

pub fn build(board: &Board, smp: u32) -> FdtWriterResult<Vec<u8>> {
    let cpu = board
        .qemu
        .map_or("arm,cortex-a53", |q| if q.cpu == "cortex-a57" { "arm,cortex-a57" } else { "arm,cortex-a53" });
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string_list("compatible", strings(board.compatible))?;
    w.property_string("model", board.description)?;
    w.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let uart_node = format!("serial@{:x}", board.console.regs.base);
    let chosen = w.begin_node("chosen")?;
    w.property_string("stdout-path", &format!("/{uart_node}"))?;
    w.end_node(chosen)?;

    let mem = w.begin_node(&format!("memory@{:x}", board.ram.base))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &reg(&[board.ram]))?;
    w.end_node(mem)?;

    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    for i in 0..smp {
        let c = w.begin_node(&format!("cpu@{i}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", cpu)?;
        w.property_u32("reg", i)?;
        w.property_string("enable-method", "psci")?;
        w.end_node(c)?;
    }
    w.end_node(cpus)?;

    // QEMU rewrites this from the machine's conduit; smc is what the i.MX
    // boards' firmware (ARM Trusted Firmware) uses.
    let psci = w.begin_node("psci")?;
    w.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2"]))?;
    w.property_string("method", "smc")?;
    w.end_node(psci)?;

    let gic = w.begin_node(&format!("interrupt-controller@{:x}", board.gic.distributor.base))?;
    w.property_string("compatible", "arm,gic-v3")?;
    w.property_u32("#interrupt-cells", 3)?;
    w.property_null("interrupt-controller")?;
    w.property_array_u64("reg", &reg(&[board.gic.distributor, board.gic.redistributors]))?;
    w.property_phandle(GIC_PHANDLE)?;
    w.end_node(gic)?;

    // Secure, non-secure, virtual and hypervisor PPIs 13, 14, 11, 10,
    // level-triggered, active low (the Arm generic timer binding).
    let timer = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    w.property_array_u32("interrupts", &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08])?;
    w.end_node(timer)?;

    let uart = w.begin_node(&uart_node)?;
    let compatible: &[&str] = match board.console.kind {
        UartKind::ImxUart => &["fsl,imx8mp-uart", "fsl,imx6q-uart"],
        UartKind::Lpuart => &["fsl,imx8qxp-lpuart"],
        UartKind::Pl011 => &["arm,pl011", "arm,primecell"],
    };
    w.property_string_list("compatible", strings(compatible))?;
    w.property_array_u64("reg", &reg(&[board.console.regs]))?;
    w.end_node(uart)?;

    let gpio = w.begin_node(&format!("gpio@{:x}", board.led.regs.base))?;
    let compatible: &[&str] = match board.led.kind {
        GpioKind::ImxGpio => &["fsl,imx8mp-gpio", "fsl,imx35-gpio"],
        GpioKind::Pl061 => &["arm,pl061", "arm,primecell"],
    };
    w.property_string_list("compatible", strings(compatible))?;
    w.property_array_u64("reg", &reg(&[board.led.regs]))?;
    w.property_null("gpio-controller")?;
    w.property_u32("#gpio-cells", 2)?;
    w.property_phandle(GPIO_PHANDLE)?;
    w.end_node(gpio)?;

    let leds = w.begin_node("leds")?;
    w.property_string("compatible", "gpio-leds")?;
    let led = w.begin_node("led-0")?;
    w.property_string("label", "status")?;
    w.property_array_u32("gpios", &[GPIO_PHANDLE, board.led.pin, 0])?;
    w.end_node(led)?;
    w.end_node(leds)?;

    w.end_node(root)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imx8mp_tree_describes_the_board() {
        let b = &platform::IMX8MP_EVK;
        let bytes = build(b, 4).unwrap();
        let t = fdt::Fdt::new(&bytes).unwrap();
        assert_eq!(t.root().compatible().first(), "fsl,imx8mp-evk");
        let mem = t.find_node("/memory").unwrap().reg().unwrap().next().unwrap();
        assert_eq!(mem.starting_address as u64, b.ram.base);
        assert_eq!(mem.size, Some(b.ram.size as usize));
        assert_eq!(t.cpus().count(), 4);
        let psci = t.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("smc"));
        let stdout = t.chosen().stdout().unwrap();
        let uart = stdout.reg().unwrap().next().unwrap();
        assert_eq!(uart.starting_address as u64, b.console.regs.base);
        let gic = t.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = gic.reg().unwrap().map(|r| r.starting_address as u64).collect();
        assert_eq!(regs, [b.gic.distributor.base, b.gic.redistributors.base]);
        let led = t.find_node("/leds/led-0").unwrap();
        let gpios: Vec<u8> = led.property("gpios").unwrap().value.to_vec();
        assert_eq!(&gpios[4..8], &b.led.pin.to_be_bytes());
    }
}
