//! The program's arguments and, for init, the bootinfo page.

use kpi::args::ArgsPage;
use kpi::bootinfo::{BOOTINFO_MAGIC, BootInfo};

/// The arguments the kernel or the parent passed.
pub struct Args {
    page: &'static ArgsPage,
}

impl Args {
    pub fn new(page: &'static ArgsPage) -> Self {
        Args { page }
    }

    /// The arguments, program name first.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> {
        self.page.args()
    }

    pub fn get(&self, i: usize) -> Option<&'static str> {
        self.page.arg(i)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The environment (`NAME=value` strings), in order.
    pub fn envs(&self) -> impl Iterator<Item = &'static str> {
        self.page.envs()
    }

    /// The value of environment variable `name`.
    pub fn var(&self, name: &str) -> Option<&'static str> {
        self.envs().find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
    }

    /// Bootinfo, if this domain was given it (init) and it is well formed.
    pub fn bootinfo(&self) -> Option<&'static BootInfo> {
        if self.page.bootinfo == 0 {
            return None;
        }
        // SAFETY: the kernel maps the bootinfo page read-only at the address
        // in the arguments page for init's lifetime; the magic is checked
        // before anything else is trusted, and the accessors bound counts.
        let bi = unsafe { &*(self.page.bootinfo as *const BootInfo) };
        (bi.magic == BOOTINFO_MAGIC).then_some(bi)
    }
}
