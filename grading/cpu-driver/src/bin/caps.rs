//! Init's CSpace (book ch. 4.9) and every capability invocation with its
//! refusals: each must do exactly what the ABI documents and, when refused,
//! change nothing. Prints `caps: ok NAME` per check.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::kpi::ErrorCode;
use aos::kpi::bootinfo::RegionKind;
use aos::kpi::cspace::*;
use aos::println;
use cpu_driver_programs::Checks;

aos::main!(run);

fn slot(cn: usize, s: u8) -> CapRef {
    CapRef::slot(cn as u32, s)
}

fn dest(cn: usize, s: u32) -> Dest {
    Dest::l2(cn as u32, s)
}

/// Builds T holding C1 holding ... C`depth` holding T's last copy, from
/// 4 MiB of `ram` at `offset`, and checks that revoking that memory
/// finishes, removes all of it, and strands nothing; with `interleave`, an
/// identify runs between the calls.
fn deep_anchor(c: &mut Checks, root: CapRef, ram: CapRef, kernel: CapRef, depth: u64, offset: u64, interleave: bool) {
    let a0 = ROOTCN_SLOT_SLOT_ALLOC0;
    let at = |s: u32| Dest { cnode: root, slot: s };
    let deep = slot(a0, 38);
    let mut setup = cap::retype(ram, dest(a0, 38), ObjType::Ram, offset, 0x40_0000, 1) == Ok(1);
    setup &= cap::retype(deep, at(88), ObjType::L2CNode, 0, 0, 1) == Ok(1);
    let mut above = 88;
    for i in 1..=depth {
        let next = if above == 89 { 93 } else { 89 };
        setup &= cap::retype(deep, Dest::l2(above, 0), ObjType::L2CNode, i * 0x8000, 0, 1) == Ok(1);
        setup &= cap::copy(CapRef::slot(above, 0), at(next)).is_ok();
        if above != 88 {
            setup &= cap::delete(CapRef::l2_cnode(above)).is_ok();
        }
        above = next;
    }
    setup &= cap::copy(CapRef::l2_cnode(88), Dest::l2(above, 255)).is_ok();
    setup &= cap::delete(CapRef::l2_cnode(above)).is_ok();
    setup &= cap::delete(CapRef::l2_cnode(88)).is_ok();
    let name = if interleave {
        "a CNode reached only through a copy 40 CNodes down, revoked with other invocations between the calls"
    } else {
        "a CNode reached only through a copy 64 CNodes down"
    };
    c.ok(name, setup, format_args!("depth {depth}: setup failed"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(deep, cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 100 => {
                if interleave {
                    let _ = cap::identify(kernel);
                }
                continue;
            }
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "all of it went (the CNodes and T's copy), and every entry left lies in a CNode",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == depth + 1),
        format_args!("{before:?} -> {after:?}"),
    );
    let again = cap::retype(deep, at(88), ObjType::Frame, 0, 0x40_0000, 1);
    c.ok("and that memory is free again", again == Ok(1), format_args!("{again:?}"));
    let _ = cap::delete(CapRef::l2_cnode(88));
    let _ = cap::delete(deep);
}

fn run(args: &aos::Args) -> i32 {
    let mut c = Checks::new("caps");
    let Some(bi) = args.bootinfo() else {
        println!("caps: FAILED no bootinfo");
        return 1;
    };

    // The well-known slots hold what the book says.
    let root = cap::identify(slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ROOTCN as u8));
    c.ok(
        "TASKCN holds the root CNode",
        root.is_ok_and(|i| i.objtype == Some(ObjType::L1CNode)),
        format_args!("{root:?}"),
    );
    let vroot = cap::identify(slot(ROOTCN_SLOT_PAGECN, PAGECN_SLOT_VROOT as u8));
    c.ok(
        "PAGECN slot 0 holds the L0 table",
        vroot.is_ok_and(|i| i.objtype == Some(ObjType::VNodeL0)),
        format_args!("{vroot:?}"),
    );
    let argsp = cap::identify(slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ARGSPAGE as u8));
    c.ok(
        "TASKCN holds the arguments page",
        argsp.is_ok_and(|i| i.objtype == Some(ObjType::Frame) && i.size == 4096),
        format_args!("{argsp:?}"),
    );
    for (s, ty) in [
        (TASKCN_SLOT_KERNELCAP, ObjType::Kernel),
        (TASKCN_SLOT_IRQ, ObjType::IrqTable),
        (TASKCN_SLOT_DEV, ObjType::DevFrame),
    ] {
        let id = cap::identify(slot(ROOTCN_SLOT_TASKCN, s as u8));
        c.ok(
            "TASKCN holds the kernel, IRQ and device capabilities",
            id.is_ok_and(|i| i.objtype == Some(ty)),
            format_args!("slot {s}: {id:?}"),
        );
    }
    for (s, ty) in [
        (TASKCN_SLOT_DISPATCHER, ObjType::Dispatcher),
        (TASKCN_SLOT_DISPFRAME, ObjType::Frame),
        (TASKCN_SLOT_SELFEP, ObjType::EndPointLmp),
    ] {
        let id = cap::identify(slot(ROOTCN_SLOT_TASKCN, s as u8));
        c.ok(
            "TASKCN holds the dispatcher, its frame and the self endpoint",
            id.is_ok_and(|i| i.objtype == Some(ty)),
            format_args!("slot {s}: {id:?}"),
        );
    }
    let pages: [bool; 3] = [0u8, 128, 255].map(|i| {
        cap::identify(slot(ROOTCN_SLOT_BASE_PAGE_CN, i))
            .is_ok_and(|p| p.objtype == Some(ObjType::Ram) && p.size == 4096)
    });
    c.ok("BASE_PAGE_CN holds a base page of RAM in every slot", pages == [true; 3], format_args!("{pages:?}"));
    if let Ok(id) = cap::identify(slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ARGSPAGE as u8)) {
        println!("caps: dump of the arguments page capability: {id}");
    }

    // Bootinfo's regions name their capabilities' slots.
    let mut ram = None;
    for r in bi.regions() {
        let (cn, ty) = match r.kind {
            RegionKind::Free => (ROOTCN_SLOT_SUPERCN, ObjType::Ram),
            RegionKind::Module => (ROOTCN_SLOT_MODULECN, ObjType::Frame),
            RegionKind::Kernel => continue,
        };
        let id = cap::identify(slot(cn, r.slot as u8));
        let pass = id.is_ok_and(|i| i.objtype == Some(ty) && i.base == r.base && i.size == r.size);
        c.ok("bootinfo regions match their capabilities", pass, format_args!("{r:?}: {id:?}"));
        if ty == ObjType::Ram && ram.is_none() && r.size >= 1 << 20 {
            ram = Some((slot(cn, r.slot as u8), r.base));
        }
    }
    let Some((ram, ram_base)) = ram else {
        println!("caps: FAILED no RAM capability of 1 MiB");
        return 1;
    };

    // Retype, and the no-overlap rule.
    let a0 = ROOTCN_SLOT_SLOT_ALLOC0;
    let r = cap::retype(ram, dest(a0, 0), ObjType::Frame, 0, 0x2000, 2);
    c.ok("retype RAM into two frames", r == Ok(2), format_args!("{r:?}"));
    let f0 = cap::identify(slot(a0, 0));
    c.ok(
        "the first frame is where asked",
        f0.is_ok_and(|i| i.objtype == Some(ObjType::Frame) && i.base == ram_base && i.size == 0x2000),
        format_args!("{f0:?}"),
    );
    let f1 = cap::identify(slot(a0, 1));
    c.ok("the second frame follows it", f1.is_ok_and(|i| i.base == ram_base + 0x2000), format_args!("{f1:?}"));
    c.err(
        "retype over typed memory",
        cap::retype(ram, dest(a0, 10), ObjType::Frame, 0x1000, 0x1000, 1),
        ErrorCode::RetypeOverlap,
    );
    c.err(
        "retype a frame into a page table",
        cap::retype(slot(a0, 0), dest(a0, 10), ObjType::VNodeL3, 0, 0, 1),
        ErrorCode::IllegalRetype,
    );
    c.err(
        "retype into the Kernel type",
        cap::retype(ram, dest(a0, 10), ObjType::Kernel, 0x8000, 0, 1),
        ErrorCode::IllegalRetype,
    );
    c.err(
        "retype zero objects",
        cap::retype(ram, dest(a0, 10), ObjType::Frame, 0x8000, 0x1000, 0),
        ErrorCode::InvalidArgument,
    );
    c.err(
        "retype beyond the source",
        cap::retype(ram, dest(a0, 10), ObjType::Frame, 1 << 40, 0x1000, 1),
        ErrorCode::InvalidArgument,
    );
    c.err(
        "retype at a misaligned offset",
        cap::retype(ram, dest(a0, 10), ObjType::Frame, 0x8800, 0x1000, 1),
        ErrorCode::Misaligned,
    );
    c.err(
        "retype into an occupied slot",
        cap::retype(ram, dest(a0, 1), ObjType::Frame, 0x8000, 0x1000, 1),
        ErrorCode::SlotInUse,
    );
    c.err(
        "retype past the end of the CNode",
        cap::retype(ram, dest(a0, 255), ObjType::Frame, 0x8000, 0x1000, 2),
        ErrorCode::BadCapAddr,
    );
    c.err(
        "retype into a slot of no CNode",
        cap::retype(ram, dest(200, 0), ObjType::Frame, 0x8000, 0x1000, 1),
        ErrorCode::BadCapAddr,
    );
    c.err("invoke an empty slot", cap::identify(slot(a0, 77)), ErrorCode::SlotEmpty);
    c.err("invoke beyond the L1 CNode", cap::identify(CapRef::slot(5000, 0)), ErrorCode::BadCapAddr);
    c.err("invoke with level 3", cap::invoke_raw(3 << 32, 0, [0; 5]), ErrorCode::BadCapAddr);
    c.err("invoke with an unknown command", cap::invoke_raw(ram.to_raw(), 99, [0; 5]), ErrorCode::InvalidCommand);
    c.err(
        "retype into an unknown type",
        cap::invoke_raw(ram.to_raw(), 1, [dest(a0, 10).to_raw(), 200, 0, 0, 1]),
        ErrorCode::InvalidArgument,
    );
    let still = cap::identify(slot(a0, 10));
    c.ok("refused retypes left no capability", still == Err(ErrorCode::SlotEmpty), format_args!("{still:?}"));

    // RetypeCheck: the no-overlap rule as a query, leaving one capability out.
    let f0_ref = Some(slot(a0, 0));
    c.is("retype check: typed memory is covered", cap::retype_check(ram, None, 0, 0x1000), Ok(true));
    c.is("retype check: not once its only frame is left out", cap::retype_check(ram, f0_ref, 0, 0x2000), Ok(false));
    c.is("retype check: the next frame still covers", cap::retype_check(ram, f0_ref, 0, 0x4000), Ok(true));
    c.is("retype check: free memory is not covered", cap::retype_check(ram, None, 0x8000, 0x1000), Ok(false));
    c.is(
        "retype check: a copy covers what its original does",
        cap::copy(slot(a0, 0), dest(a0, 11)).and_then(|()| cap::retype_check(ram, f0_ref, 0, 0x2000)),
        Ok(true),
    );
    c.is("retype check: delete the copy", cap::delete(slot(a0, 11)), Ok(()));
    c.is(
        "retype check: another copy of the RAM reaches all of it",
        cap::copy(ram, dest(a0, 11)).and_then(|()| cap::retype_check(ram, None, 0x8000, 0x1000)),
        Ok(true),
    );
    c.is("retype check: but not the RAM itself", cap::retype_check(ram, Some(slot(a0, 11)), 0x8000, 0x1000), Ok(false));
    c.is("retype check: delete the RAM's copy", cap::delete(slot(a0, 11)), Ok(()));
    c.err("retype check on a frame", cap::retype_check(slot(a0, 0), None, 0, 0x1000), ErrorCode::WrongCapType);
    c.err("retype check beyond the source", cap::retype_check(ram, None, 1 << 40, 0x1000), ErrorCode::InvalidArgument);
    c.err(
        "retype check leaving out an empty slot",
        cap::retype_check(ram, Some(slot(a0, 12)), 0, 0x1000),
        ErrorCode::SlotEmpty,
    );
    c.err(
        "retype check leaving out a bad address",
        cap::invoke_raw(ram.to_raw(), 10, [3 << 32, 0, 0x1000, 0, 0]),
        ErrorCode::BadCapAddr,
    );
    c.ok("retype checks changed nothing", cap::identify(slot(a0, 0)) == f0, format_args!("frame 0 changed"));

    // Kernel objects from RAM.
    for (i, ty) in [ObjType::L2CNode, ObjType::VNodeL0, ObjType::VNodeL3, ObjType::Dispatcher].into_iter().enumerate() {
        let r = cap::retype(ram, dest(a0, 20 + i as u32), ty, 0x10_000 * (i as u64 + 1), 0, 1);
        c.ok("retype RAM into kernel objects", r == Ok(1), format_args!("{ty:?}: {r:?}"));
    }

    // Copy, mint, delete.
    c.ok("copy a frame", cap::copy(slot(a0, 0), dest(a0, 2)).is_ok(), format_args!(""));
    let cp = cap::identify(slot(a0, 2));
    c.ok("the copy is the same frame", cp == f0, format_args!("{cp:?} vs {f0:?}"));
    c.ok("mint a read-only copy", cap::mint(slot(a0, 0), dest(a0, 3), 1, None).is_ok(), format_args!(""));
    let ro = cap::identify(slot(a0, 3));
    c.ok("the minted copy is read-only", ro.is_ok_and(|i| i.rights == 1), format_args!("{ro:?}"));
    c.ok(
        "mint from read-only asking for all rights",
        cap::mint(slot(a0, 3), dest(a0, 4), 0x1f, None).is_ok(),
        format_args!(""),
    );
    let still_ro = cap::identify(slot(a0, 4));
    c.ok("mint never adds rights", still_ro.is_ok_and(|i| i.rights == 1), format_args!("{still_ro:?}"));
    c.err("mint with unknown rights bits", cap::mint(slot(a0, 0), dest(a0, 5), 0xff, None), ErrorCode::InvalidArgument);
    c.err("copy into an occupied slot", cap::copy(slot(a0, 0), dest(a0, 1)), ErrorCode::SlotInUse);
    c.ok("delete a copy", cap::delete(slot(a0, 2)).is_ok(), format_args!(""));
    c.err("the deleted slot is empty", cap::identify(slot(a0, 2)), ErrorCode::SlotEmpty);
    c.ok("delete an empty CNode", cap::delete(slot(a0, 20)).is_ok(), format_args!(""));

    // Revoke: copies and descendants go, the capability stays.
    let n = cap::revoke(ram);
    c.ok("revoke RAM", n.is_ok_and(|n| n >= 5), format_args!("{n:?}"));
    for s in [0u8, 1, 3, 4, 21, 22] {
        c.err("revoke removed every descendant", cap::identify(slot(a0, s)), ErrorCode::SlotEmpty);
    }
    c.ok("the revoked capability remains", cap::identify(ram).is_ok(), format_args!(""));
    let again = cap::retype(ram, dest(a0, 0), ObjType::Frame, 0, 0x2000, 1);
    c.ok("memory can be retyped again after revoke", again == Ok(1), format_args!("{again:?}"));

    // New L2 CNodes linked into the root CNode extend the CSpace.
    let root_copy = slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ROOTCN as u8);
    let in_root = |s: u32| Dest { cnode: root_copy, slot: s };
    let r = cap::retype(ram, in_root(20), ObjType::L2CNode, 0x40_0000, 0, 1);
    c.ok("retype an L2 CNode into the root CNode", r == Ok(1), format_args!("{r:?}"));
    let r = cap::retype(ram, Dest::l2(20, 0), ObjType::Frame, 0x50_0000, 0x1000, 1);
    c.ok("the new CNode takes capabilities at once", r == Ok(1), format_args!("{r:?}"));
    let f = cap::identify(CapRef::slot(20, 0));
    c.ok("and they resolve through it", f.is_ok_and(|i| i.objtype == Some(ObjType::Frame)), format_args!("{f:?}"));
    let r = cap::retype(ram, in_root(21), ObjType::Frame, 0x51_0000, 0x1000, 1);
    c.ok("a frame in a root slot", r == Ok(1), format_args!("{r:?}"));
    c.err(
        "a frame in a root slot is no CNode to resolve through",
        cap::identify(CapRef::slot(21, 0)),
        ErrorCode::BadCapAddr,
    );
    c.err(
        "an occupied root slot",
        cap::retype(ram, in_root(ROOTCN_SLOT_SUPERCN as u32), ObjType::L2CNode, 0x52_0000, 0, 1),
        ErrorCode::SlotInUse,
    );
    c.err(
        "past the root CNode's end",
        cap::retype(ram, in_root(256), ObjType::L2CNode, 0x52_0000, 0, 1),
        ErrorCode::BadCapAddr,
    );

    // Resizing the root: a larger, empty L1 CNode takes every slot.
    let r = cap::retype(ram, dest(a0, 30), ObjType::L1CNode, 0x60_0000, 512 * 128, 1);
    c.ok("retype a 512-slot L1 CNode", r == Ok(1), format_args!("{r:?}"));
    let r = cap::retype(ram, dest(a0, 31), ObjType::L1CNode, 0x70_0000, 256 * 128, 1);
    c.ok("and a 256-slot one", r == Ok(1), format_args!("{r:?}"));
    c.err(
        "resize through a CNode that is not the root",
        cap::resize_root(slot(a0, 31), slot(a0, 30)),
        ErrorCode::WrongCapType,
    );
    c.err("resize into the same CNode", cap::resize_root(root_copy, root_copy), ErrorCode::InvalidArgument);
    c.ok("resize the root to 512 slots", cap::resize_root(root_copy, slot(a0, 30)).is_ok(), format_args!(""));
    let moved =
        [cap::identify(ram).is_ok(), cap::identify(CapRef::slot(20, 0)).is_ok(), cap::identify(slot(a0, 30)).is_ok()];
    c.ok("every capability resolves after the resize", moved == [true; 3], format_args!("{moved:?}"));
    c.err(
        "the old root's copy no longer names the root",
        cap::resize_root(root_copy, slot(a0, 31)),
        ErrorCode::WrongCapType,
    );
    let r = cap::retype(ram, Dest { cnode: slot(a0, 30), slot: 400 }, ObjType::L2CNode, 0x80_0000, 0, 1);
    c.ok("a CNode at root slot 400", r == Ok(1), format_args!("{r:?}"));
    let r = cap::retype(ram, Dest::l2(400, 7), ObjType::Frame, 0x90_0000, 0x1000, 1);
    c.ok("slot 400 resolves", r == Ok(1) && cap::identify(CapRef::slot(400, 7)).is_ok(), format_args!("{r:?}"));
    c.err("a smaller root", cap::resize_root(slot(a0, 30), slot(a0, 31)), ErrorCode::InvalidArgument);
    let largest = L1_CNODE_MAX_SLOTS as u64 * 128;
    c.err(
        "an L1 CNode past the largest size",
        cap::retype(ram, dest(a0, 32), ObjType::L1CNode, 0x20_0000, largest + 4096, 1),
        ErrorCode::InvalidArgument,
    );
    let r = cap::retype(ram, dest(a0, 32), ObjType::L1CNode, 0x20_0000, largest, 1);
    c.ok("one of the largest size", r == Ok(1) && cap::delete(slot(a0, 32)).is_ok(), format_args!("{r:?}"));

    // Deleting the last copy of a CNode deletes what it holds, nested CNodes
    // included, in bounded steps (the wrappers repeat on Retry).
    let kernel = slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_KERNELCAP as u8);
    let new_root = slot(a0, 30);
    let at = |s: u32| Dest { cnode: new_root, slot: s };
    let setup = [
        cap::retype(ram, at(50), ObjType::L2CNode, 0xa0_0000, 0, 1),
        cap::retype(ram, Dest::l2(50, 0), ObjType::L2CNode, 0xa8_0000, 0, 1),
        cap::copy(CapRef::slot(50, 0), at(51)).map(|()| 1),
        cap::retype(ram, Dest::l2(51, 0), ObjType::Frame, 0xb0_0000, 0x1000, 3),
        cap::retype(ram, Dest::l2(50, 1), ObjType::Frame, 0xb1_0000, 0x1000, 1),
        cap::delete(CapRef::l2_cnode(51)).map(|()| 1),
    ];
    c.ok(
        "a CNode holding a CNode holding frames",
        setup == [Ok(1), Ok(1), Ok(1), Ok(3), Ok(1), Ok(1)],
        format_args!("{setup:?}"),
    );
    let before = cap::debug_check(kernel);
    let deleted = cap::delete(CapRef::l2_cnode(50));
    let after = cap::debug_check(kernel);
    c.ok("delete its last copy", deleted.is_ok(), format_args!("{deleted:?}"));
    c.ok(
        "its contents went with it: six capabilities",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 6),
        format_args!("{before:?} -> {after:?}"),
    );
    // (Three frames in root slots 50-52 from here on.)
    let again = cap::retype(ram, at(50), ObjType::Frame, 0xb0_0000, 0x1000, 3);
    c.ok("the memory they typed is free again", again == Ok(3), format_args!("{again:?}"));
    // More than one invocation's worth: 200 frames take several steps.
    let setup = [
        cap::retype(ram, at(70), ObjType::L2CNode, 0xd0_0000, 0, 1),
        cap::retype(ram, Dest::l2(70, 0), ObjType::Frame, 0xe0_0000, 0x1000, 200),
    ];
    c.ok("a CNode holding 200 frames", setup == [Ok(1), Ok(200)], format_args!("{setup:?}"));
    let before = cap::debug_check(kernel);
    let first = cap::invoke(CapRef::l2_cnode(70), cap::Command::Delete, [0; 5]);
    c.err("one invocation does a bounded step", first, ErrorCode::Retry);
    let rest = cap::delete(CapRef::l2_cnode(70));
    let after = cap::debug_check(kernel);
    c.ok("repeating finishes the delete", rest.is_ok(), format_args!("{rest:?}"));
    c.ok(
        "all 201 capabilities went",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 201),
        format_args!("{before:?} -> {after:?}"),
    );

    // A revoke that reaches a CNode with contents deletes them too.
    let setup = [
        cap::retype(ram, dest(a0, 60), ObjType::Ram, 0xc0_0000, 1 << 20, 1),
        cap::retype(slot(a0, 60), at(62), ObjType::L2CNode, 0, 0, 1),
        cap::retype(slot(a0, 60), Dest::l2(62, 0), ObjType::Frame, 0x8_0000, 0x1000, 2),
    ];
    c.ok("RAM typed into a CNode holding frames", setup == [Ok(1), Ok(1), Ok(2)], format_args!("{setup:?}"));
    let before = cap::debug_check(kernel);
    let n = cap::revoke(slot(a0, 60));
    let after = cap::debug_check(kernel);
    c.ok("revoke it", n.is_ok(), format_args!("{n:?}"));
    c.ok(
        "the CNode and its frames are gone",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 3),
        format_args!("{before:?} -> {after:?}"),
    );
    c.err("its root slot is empty", cap::identify(CapRef::l2_cnode(62)), ErrorCode::SlotEmpty);

    // A chain of 70 CNodes, each holding the next one's only copy, is deeper
    // than one call may visit: repeated calls still finish the delete.
    const DEPTH: u64 = 70;
    let chain = slot(a0, 34);
    let mut setup = cap::retype(ram, dest(a0, 34), ObjType::Ram, 0x100_0000, 0x40_0000, 1)
        .and_then(|_| cap::retype(chain, at(90), ObjType::L2CNode, 0, 0, 1));
    let mut above = 90; // the root slot through which the deepest CNode so far is reached
    for i in 1..DEPTH {
        let next = if above == 91 { 92 } else { 91 };
        setup = setup
            .and_then(|_| cap::retype(chain, Dest::l2(above, 0), ObjType::L2CNode, i * 0x8000, 0, 1))
            .and_then(|_| cap::copy(CapRef::slot(above, 0), at(next)).map(|()| 1))
            .and_then(|n| if above == 90 { Ok(n) } else { cap::delete(CapRef::l2_cnode(above)).map(|()| n) });
        above = next;
    }
    setup = setup
        .and_then(|_| cap::retype(chain, Dest::l2(above, 1), ObjType::Frame, DEPTH * 0x8000, 0x1000, 1))
        .and_then(|n| cap::delete(CapRef::l2_cnode(above)).map(|()| n));
    c.ok("a chain of 70 CNodes ending in a frame", setup == Ok(1), format_args!("{setup:?}"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let done = loop {
        calls += 1;
        match cap::invoke(CapRef::l2_cnode(90), cap::Command::Delete, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 1000 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("deleting its top finishes", done.is_ok(), format_args!("{done:?} after {calls} calls"));
    // 71 deletions and about 140 steps (down 70 levels, back up 70) at 64
    // of each per call: a clear that keeps its path needs 3 calls; one that
    // climbed back from the top after every deletion needed 39.
    c.ok("in a number of calls linear in the depth", calls <= 4, format_args!("{calls} calls"));
    c.ok(
        "all 70 CNodes and the frame went",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == DEPTH + 1),
        format_args!("{before:?} -> {after:?}"),
    );
    let again = cap::retype(chain, at(90), ObjType::Frame, 0, 0x40_0000, 1);
    c.ok("and the chain's memory is free again", again == Ok(1), format_args!("{again:?}"));

    // A CNode holding its own last copy is unreachable, but revoking the
    // memory it came from reclaims it in a bounded number of calls.
    let setup = [
        cap::retype(ram, dest(a0, 33), ObjType::Ram, 0x30_0000, 0x1_0000, 1),
        cap::retype(slot(a0, 33), at(80), ObjType::L2CNode, 0, 0, 1),
        cap::copy(CapRef::l2_cnode(80), Dest::l2(80, 0)).map(|()| 1),
        cap::retype(slot(a0, 33), Dest::l2(80, 1), ObjType::Frame, 0x8000, 0x1000, 1),
        cap::delete(CapRef::l2_cnode(80)).map(|()| 1),
    ];
    c.ok("a CNode whose only copy is inside it", setup == [Ok(1); 5], format_args!("{setup:?}"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(slot(a0, 33), cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 10 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "the CNode and its frame are gone",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 2),
        format_args!("{before:?} -> {after:?}"),
    );
    let again = cap::retype(slot(a0, 33), at(80), ObjType::Frame, 0, 0x1_0000, 1);
    c.ok("and its memory is free again", again == Ok(1), format_args!("{again:?}"));

    // The same with more contents than one call deletes, none of them from
    // the revoked memory: the copy that keeps the CNode reachable must go
    // last, or the rest would be left behind in memory that is then free.
    let mut setup = [
        cap::retype(ram, dest(a0, 35), ObjType::Ram, 0x31_0000, 0x1_0000, 1),
        cap::retype(slot(a0, 35), at(81), ObjType::L2CNode, 0, 0, 1),
        cap::copy(CapRef::l2_cnode(81), Dest::l2(81, 0)).map(|()| 1),
    ] == [Ok(1); 3];
    for i in 1..100u32 {
        setup &= cap::copy(kernel, Dest::l2(81, i)).is_ok();
    }
    setup &= cap::delete(CapRef::l2_cnode(81)).is_ok();
    c.ok("a CNode whose only copy is inside it, with 99 more entries", setup, format_args!("setup failed"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(slot(a0, 35), cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 10 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "all 100 entries went with it",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 100),
        format_args!("{before:?} -> {after:?}"),
    );

    // One level deeper: T holds U, U holds T's last copy; both hold more
    // than one call deletes. T's copy must still go last, after everything
    // else in T and in U, or T's entries would be stranded.
    let mut setup = cap::retype(ram, dest(a0, 36), ObjType::Ram, 0x34_0000, 0x2_0000, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 36), at(83), ObjType::L2CNode, 0, 0, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 36), Dest::l2(83, 0), ObjType::L2CNode, 0x8000, 0, 1) == Ok(1);
    setup &= cap::copy(CapRef::slot(83, 0), at(84)).is_ok();
    setup &= cap::copy(CapRef::l2_cnode(83), Dest::l2(84, 0)).is_ok();
    for i in 1..100u32 {
        setup &= cap::copy(kernel, Dest::l2(83, i)).is_ok();
    }
    for i in 1..11u32 {
        setup &= cap::copy(kernel, Dest::l2(84, i)).is_ok();
    }
    setup &= cap::delete(CapRef::l2_cnode(84)).is_ok();
    setup &= cap::delete(CapRef::l2_cnode(83)).is_ok();
    c.ok("a CNode reached only through a copy inside a CNode it holds", setup, format_args!("setup failed"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(slot(a0, 36), cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 10 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "all 111 entries went, and every entry left lies in a CNode",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 111),
        format_args!("{before:?} -> {after:?}"),
    );

    // Two levels deeper, with entries at every level: T holds U1, U1 holds
    // U2, U2 holds T's last copy.
    let mut setup = cap::retype(ram, dest(a0, 37), ObjType::Ram, 0x38_0000, 0x2_0000, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 37), at(85), ObjType::L2CNode, 0, 0, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 37), Dest::l2(85, 0), ObjType::L2CNode, 0x8000, 0, 1) == Ok(1);
    setup &= cap::copy(CapRef::slot(85, 0), at(86)).is_ok();
    setup &= cap::retype(slot(a0, 37), Dest::l2(86, 0), ObjType::L2CNode, 0x1_0000, 0, 1) == Ok(1);
    setup &= cap::copy(CapRef::slot(86, 0), at(87)).is_ok();
    setup &= cap::copy(CapRef::l2_cnode(85), Dest::l2(87, 0)).is_ok();
    for (cn, n) in [(85, 70u32), (86, 5), (87, 5)] {
        for i in 1..=n {
            setup &= cap::copy(kernel, Dest::l2(cn, i)).is_ok();
        }
    }
    for cn in [87, 86, 85] {
        setup &= cap::delete(CapRef::l2_cnode(cn)).is_ok();
    }
    c.ok("a CNode reached only through a copy two CNodes down", setup, format_args!("setup failed"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(slot(a0, 37), cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 10 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "all 83 entries went, and every entry left lies in a CNode",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 83),
        format_args!("{before:?} -> {after:?}"),
    );

    // Deeper than one call can walk: T holds C1, ..., C64 holds T's last
    // copy (in its last slot). Repeated revokes must still finish. And 40
    // deep with another invocation between the calls, which drops the
    // kernel's cursor, so each call starts from the top again.
    deep_anchor(&mut c, new_root, ram, kernel, 64, 0x200_0000, false);
    deep_anchor(&mut c, new_root, ram, kernel, 40, 0x280_0000, true);

    // The anchor one level down while T is full: T's other entries must go
    // first to make room for it.
    // (U comes from other memory, so the revoke reaches U only through T.)
    let mut setup = cap::retype(ram, dest(a0, 39), ObjType::Ram, 0x300_0000, 0x8000, 1) == Ok(1);
    setup &= cap::retype(ram, dest(a0, 40), ObjType::Ram, 0x310_0000, 0x8000, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 39), at(94), ObjType::L2CNode, 0, 0, 1) == Ok(1);
    setup &= cap::retype(slot(a0, 40), Dest::l2(94, 0), ObjType::L2CNode, 0, 0, 1) == Ok(1);
    setup &= cap::copy(CapRef::slot(94, 0), at(95)).is_ok();
    setup &= cap::copy(CapRef::l2_cnode(94), Dest::l2(95, 0)).is_ok();
    for i in 1..256u32 {
        setup &= cap::copy(kernel, Dest::l2(94, i)).is_ok();
    }
    setup &= cap::delete(CapRef::l2_cnode(95)).is_ok();
    setup &= cap::delete(CapRef::l2_cnode(94)).is_ok();
    c.ok("a full CNode reached only through a copy one CNode down", setup, format_args!("setup failed"));
    let before = cap::debug_check(kernel);
    let mut calls = 0;
    let n = loop {
        calls += 1;
        match cap::invoke(slot(a0, 39), cap::Command::Revoke, [0; 5]) {
            Err(ErrorCode::Retry) if calls < 20 => continue,
            r => break r,
        }
    };
    let after = cap::debug_check(kernel);
    c.ok("revoking its memory finishes", n.is_ok(), format_args!("{n:?} after {calls} calls"));
    c.ok(
        "all 257 entries went, and every entry left lies in a CNode",
        matches!((before, after), (Ok(b), Ok(a)) if b - a == 257),
        format_args!("{before:?} -> {after:?}"),
    );

    // The root CNode's own copy can go: the kernel keeps the CSpace root.
    c.ok(
        "delete the root CNode copy in TASKCN",
        cap::delete(slot(ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ROOTCN as u8)).is_ok(),
        format_args!(""),
    );
    let after = cap::identify(slot(a0, 0));
    c.ok("the CSpace still works after that", after.is_ok(), format_args!("{after:?}"));
    // Nor can revoke take it: not through a copy of the root, nor through
    // the RAM the root was retyped from.
    let n = cap::revoke(new_root);
    c.ok("revoke the root CNode's copy", n.is_ok(), format_args!("{n:?}"));
    let after = cap::identify(slot(a0, 30));
    c.ok("the CSpace still resolves", after.is_ok(), format_args!("{after:?}"));
    let n = cap::revoke(ram);
    c.ok("revoke the RAM the root came from", n.is_ok(), format_args!("{n:?}"));
    let after = [cap::identify(kernel).is_ok(), cap::identify(ram).is_ok()];
    c.ok("the CSpace still resolves", after == [true; 2], format_args!("{after:?}"));
    c.err("its descendants went", cap::identify(CapRef::slot(400, 7)), ErrorCode::BadCapAddr);
    c.err(
        "the root's memory stays typed",
        cap::retype(ram, dest(a0, 90), ObjType::Frame, 0x60_0000, 0x1000, 1),
        ErrorCode::RetypeOverlap,
    );

    if c.failed == 0 {
        println!("caps: all checks passed");
        0
    } else {
        println!("caps: {} checks failed", c.failed);
        1
    }
}
