//! Register maps of the devices the kit drives, written with `tock-registers`.
//!
//! This crate owns layouts and bitfields only: offsets, widths and the meaning
//! of bits, taken from the devices' reference manuals. It performs no access,
//! knows no address and no board. Drivers (the course's exercises) live in the
//! stages and in `platform`; board code decides where each block sits.
//!
//! Every block has a host test asserting its offsets against the manual, so a
//! typo in a layout fails `cargo test` rather than a boot.

#![no_std]

#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod gicv3;
pub mod imx_gpio;
pub mod imx_uart;
pub mod lpuart;
pub mod pl011;
pub mod pl061;
