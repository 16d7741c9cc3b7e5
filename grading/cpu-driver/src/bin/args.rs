//! Prints its arguments and what bootinfo says, so the suite can compare
//! them with `menu.lst` and the machine.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;

aos::main!(run);

fn run(args: &aos::Args) -> i32 {
    println!("args: argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        println!("args: argv[{i}]=<{a}>");
    }
    let Some(bi) = args.bootinfo() else {
        println!("args: no bootinfo");
        return 1;
    };
    let free: u64 =
        bi.regions().iter().filter(|r| r.kind == aos::kpi::bootinfo::RegionKind::Free).map(|r| r.size).sum();
    println!("args: bootinfo: {} modules, {} regions, {} KiB free", bi.modules().len(), bi.regions().len(), free >> 10);
    for m in bi.modules() {
        if let Some((name, cmdline)) = bi.module_text(m) {
            println!("args: module <{name}> at {:#x}, {} bytes, cmdline <{cmdline}>", m.base, m.size);
        }
    }
    0
}
