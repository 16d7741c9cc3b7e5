//! Links the CPU driver for the board selected by cargo feature: high-half
//! virtual addresses, physical load address from `platform`.

fn main() {
    platform::build::link_kernel("link.ld");
}
