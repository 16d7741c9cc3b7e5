//! Links the M0 kernel for the board selected by cargo feature.

fn main() {
    platform::build::link_kernel("link.ld");
}
