//! Grading suites, one module per stage.

use crate::qemu::QemuConfig;

pub mod cpu_driver;
pub mod m0;
pub mod m1;
pub mod m2;

/// One QEMU configuration a suite runs against.
#[derive(Clone, Debug)]
pub struct Target {
    /// Label in check names, e.g. `qemu-virt-el2`.
    pub label: String,
    /// The stage's default image.
    pub config: QemuConfig,
    /// For stages booted from `menu.lst` files: one configuration per menu,
    /// by menu name.
    pub menus: Vec<(String, QemuConfig)>,
}

impl Target {
    /// The configuration of a menu, or why there is none.
    pub fn menu(&self, name: &str) -> Result<&QemuConfig, String> {
        self.menus.iter().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(|| format!("no image for menu '{name}'"))
    }
}
