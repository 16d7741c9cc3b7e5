//! Links the M0 kernel for the board selected by cargo feature: the linker
//! script is shared, the load address comes from `platform`.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let selected: Vec<_> = platform::ALL
        .iter()
        .filter(|b| {
            let feature = format!("CARGO_FEATURE_{}", b.name.to_uppercase().replace('-', "_"));
            std::env::var_os(feature).is_some()
        })
        .collect();
    // `platform` itself reports a missing or ambiguous board with a clear
    // compile error; only link when the choice is unique.
    if let [board] = selected[..] {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        println!("cargo:rustc-link-arg-bins=--defsym=IMAGE_BASE={:#x}", board.image_base);
        println!("cargo:rustc-link-arg-bins=--defsym=TEXT_OFFSET={:#x}", platform::TEXT_OFFSET);
    }
}
