//! Links the CPU driver for the board selected by cargo feature: high-half
//! virtual addresses, physical load address from `platform`.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let selected: Vec<_> = platform::ALL
        .iter()
        .filter(|b| std::env::var_os(format!("CARGO_FEATURE_{}", b.name.to_uppercase().replace('-', "_"))).is_some())
        .collect();
    // `platform` reports a missing or ambiguous board itself.
    if let [board] = selected[..] {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        println!("cargo:rustc-link-arg-bins=--defsym=IMAGE_BASE={:#x}", board.image_base);
        println!("cargo:rustc-link-arg-bins=--defsym=TEXT_OFFSET={:#x}", platform::TEXT_OFFSET);
        println!("cargo:rustc-link-arg-bins=--defsym=RAM_GIB={:#x}", board.ram.base >> 30);
    }
}
