//! Building page tables from capabilities (book ch. 3.13, Table 3.1): map a
//! table of each level, 4 KiB pages and a 2 MiB block, touch the memory
//! from EL0, and check every refusal. Ends by writing through a mapping
//! made read-only, which must fault (the suite checks the kernel's report).

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::{self, CapRef, ObjType};
use aos::kpi::ErrorCode;
use aos::kpi::cspace::*;
use aos::println;
use cpu_driver_programs::Checks;
use cpu_driver_programs::alloc0::{d, s};

aos::main!(run);

const R: u8 = 1;
const RW: u8 = 3;
const RWX: u8 = 7;
/// The mappings go under L0 entry 1: virtual addresses from 512 GiB, which
/// init's own image and stack (under entry 0) never use.
const BASE_VA: u64 = 1 << 39;

fn touch(va: u64, value: u64) -> u64 {
    let p = va as *mut u64;
    // SAFETY: the test mapped this address read-write just before; if the
    // mapping were wrong the kernel would end the domain with a report.
    unsafe {
        p.write_volatile(value);
        p.read_volatile()
    }
}

fn run(args: &aos::Args) -> i32 {
    let mut c = Checks::new("vspace");
    let Some(bi) = args.bootinfo() else { return 1 };
    // A RAM capability of at least 8 MiB.
    let Some(r) = bi.regions().iter().find(|r| r.kind == aos::kpi::bootinfo::RegionKind::Free && r.size >= 8 << 20)
    else {
        println!("vspace: FAILED no 8 MiB of RAM");
        return 1;
    };
    let ram = CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, r.slot as u8);
    let l0 = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
    // A 2 MiB-aligned offset into the RAM for the block.
    let block_off = (r.base + (4 << 20)).next_multiple_of(2 << 20) - r.base;
    c.is(
        "retype tables",
        [
            cap::retype(ram, d(0), ObjType::VNodeL1, 0, 0, 1),
            cap::retype(ram, d(1), ObjType::VNodeL2, 0x1000, 0, 1),
            cap::retype(ram, d(2), ObjType::VNodeL3, 0x2000, 0, 1),
            cap::retype(ram, d(3), ObjType::Frame, 0x4000, 0x2000, 1),
            cap::retype(ram, d(4), ObjType::Frame, block_off, 2 << 20, 1),
        ],
        [Ok(1); 5],
    );

    c.is("map L1 into L0", cap::map(l0, s(0), 1, 1, RW, 0, d(10)), Ok(()));
    c.is("map L2 into L1", cap::map(s(0), s(1), 0, 1, RW, 0, d(11)), Ok(()));
    c.is("map L3 into L2", cap::map(s(1), s(2), 0, 1, RW, 0, d(12)), Ok(()));
    c.is("map an 8 KiB frame as two pages", cap::map(s(2), s(3), 0, 2, RW, 0, d(13)), Ok(()));
    c.is("write and read the first page", touch(BASE_VA, 0x1111), 0x1111);
    c.is("write and read the second page", touch(BASE_VA + 0x1ff8, 0x2222), 0x2222);
    c.is("map a 2 MiB block", cap::map(s(1), s(4), 1, 1, RW, 0, d(14)), Ok(()));
    c.is("write and read across the block", touch(BASE_VA + (2 << 20) + 0x1f_fff8, 0x3333), 0x3333);
    let mapping = cap::identify(s(13));
    c.ok(
        "the mapping capability records the frame",
        mapping.is_ok_and(|m| m.objtype == Some(ObjType::FrameMapping) && m.size == 0x2000),
        format_args!("{mapping:?}"),
    );

    // A mapping capability stands for entries that exist once: no copies.
    c.is("copy a mapping capability", cap::copy(s(13), d(20)), Err(ErrorCode::WrongCapType));
    c.is("mint a mapping capability", cap::mint(s(13), d(20), R, None), Err(ErrorCode::WrongCapType));
    c.is("revoking a mapping finds nothing to delete", cap::revoke(s(13)), Ok(0));
    c.is("and leaves the pages mapped", touch(BASE_VA + 8, 0x1212), 0x1212);

    // Refusals, each leaving the tables as they were.
    c.is("double mapping", cap::map(s(2), s(3), 1, 1, RW, 0, d(20)), Err(ErrorCode::AlreadyMapped));
    c.is("a table into the wrong level", cap::map(s(0), s(2), 5, 1, RW, 0, d(20)), Err(ErrorCode::IllegalMapping));
    c.is("a frame into L0", cap::map(l0, s(3), 5, 1, RW, 0, d(20)), Err(ErrorCode::IllegalMapping));
    c.is("a small frame as a 2 MiB block", cap::map(s(1), s(3), 5, 1, RW, 0, d(20)), Err(ErrorCode::InvalidArgument));
    c.is("entries past the table's end", cap::map(s(2), s(3), 511, 2, RW, 0, d(20)), Err(ErrorCode::InvalidArgument));
    c.is("write and execute together", cap::map(s(2), s(3), 5, 1, RWX, 0, d(20)), Err(ErrorCode::NoRights));
    c.is("map into a frame", cap::map(s(3), s(3), 5, 1, RW, 0, d(20)), Err(ErrorCode::WrongCapType));
    c.is("mint a read-only frame", cap::mint(s(3), d(5), R, None), Ok(()));
    c.is("mapping without rights", cap::map(s(2), s(5), 5, 1, RW, 0, d(20)), Err(ErrorCode::NoRights));
    c.is("read-only mapping of it", cap::map(s(2), s(5), 5, 1, R, 0, d(21)), Ok(()));
    c.is("mapping into an occupied slot", cap::map(s(2), s(3), 7, 1, RW, 0, d(21)), Err(ErrorCode::SlotInUse));
    c.is("nothing was written by the refusals", cap::map(s(2), s(3), 7, 1, RW, 0, d(22)), Ok(()));

    // Unmap, and deleting a frame removes its mappings.
    c.is("unmap", cap::unmap(s(22)), Ok(()));
    c.is("the entry is free again", cap::map(s(2), s(3), 7, 1, RW, 0, d(22)), Ok(()));
    c.is("unmapping what is not mapped", cap::unmap(s(30)), Err(ErrorCode::SlotEmpty));
    c.is("delete the read-only copy", cap::delete(s(5)), Ok(()));
    c.is("its mapping stays while the frame lives", cap::identify(s(21)).is_ok(), true);
    c.is("delete the frame's last copy", cap::delete(s(3)), Ok(()));
    c.is(
        "its mappings went with it",
        [cap::identify(s(13)).err(), cap::identify(s(21)).err(), cap::identify(s(22)).err()],
        [Some(ErrorCode::SlotEmpty); 3],
    );
    c.is(
        "the entries are free again",
        cap::retype(ram, d(3), ObjType::Frame, 0x4000, 0x2000, 1)
            .and_then(|_| cap::map(s(2), s(3), 0, 2, RW, 0, d(13))),
        Ok(()),
    );
    c.is("fresh mapping sees the frame's bytes", touch(BASE_VA, 0x4444), 0x4444);

    // Which mappings survive a frame's deletion: those a surviving frame
    // contains. G is 8 KiB at entries 40-41, its second page F at 42.
    let va = |entry: u64| BASE_VA + entry * 0x1000;
    c.is(
        "a frame, a piece of it, both mapped",
        [
            cap::retype(ram, d(40), ObjType::Frame, 0x8000, 0x2000, 1),
            cap::retype(s(40), d(41), ObjType::Frame, 0x1000, 0x1000, 1),
            cap::map(s(2), s(40), 40, 2, RW, 0, d(42)).map(|()| 1),
            cap::map(s(2), s(41), 42, 1, RW, 0, d(43)).map(|()| 1),
        ],
        [Ok(1); 4],
    );
    c.is("delete the piece", cap::delete(s(41)), Ok(()));
    c.is("its mapping stays: the larger frame contains it", cap::identify(s(43)).is_ok(), true);
    c.is("and still reaches the same memory", [touch(va(42), 0x4242), touch(va(41), 0x4141)], [0x4242, 0x4141]);
    // SAFETY: entry 42 is mapped read-write (checked just above).
    let through_42 = unsafe { (va(42) as *const u64).read_volatile() };
    c.is("both views are one page", through_42, 0x4141);
    c.is(
        "another piece, mapped",
        cap::retype(s(40), d(44), ObjType::Frame, 0, 0x1000, 1)
            .and_then(|_| cap::map(s(2), s(44), 44, 1, RW, 0, d(45))),
        Ok(()),
    );
    c.is("delete the larger frame", cap::delete(s(40)), Ok(()));
    c.is(
        "its own mapping and the orphaned one went; the live piece's stayed",
        [cap::identify(s(42)).err(), cap::identify(s(43)).err(), cap::identify(s(45)).err()],
        [Some(ErrorCode::SlotEmpty), Some(ErrorCode::SlotEmpty), None],
    );
    c.is("the live piece is still mapped", touch(va(44), 0x4444), 0x4444);
    c.is("the freed entries take new mappings", cap::map(s(2), s(44), 40, 1, RW, 0, d(46)), Ok(()));

    // A frame mapped 100 times: its deletion removes more mappings than one
    // invocation may, so the first call does part and answers Retry.
    let r = cap::retype(ram, d(99), ObjType::Frame, 0xa000, 0x1000, 1);
    let mapped = (0..100u16).filter(|&i| cap::map(s(2), s(99), 100 + i, 1, R, 0, d(100 + i as u8)).is_ok()).count();
    c.is("one frame mapped 100 times", (r, mapped), (Ok(1), 100));
    c.is(
        "deleting it takes more than one call",
        cap::invoke(s(99), cap::Command::Delete, [0; 5]).err(),
        Some(ErrorCode::Retry),
    );
    c.is("repeating finishes", cap::delete(s(99)), Ok(()));
    let left = (100..200u32).filter(|&i| cap::identify(s(i as u8)).is_ok()).count();
    c.is("every mapping went", left, 0);

    // A table with entries can go: its entries and their mapping
    // capabilities go with it (a domain cannot pin memory by keeping them).
    // A second L3 table under L2 entry 3, a frame mapped twice into it.
    c.is(
        "a second table with a frame mapped in it twice",
        [
            cap::retype(ram, d(210), ObjType::VNodeL3, 0xc000, 0, 1),
            cap::retype(ram, d(211), ObjType::Frame, 0xd000, 0x1000, 1),
            cap::map(s(1), s(210), 3, 1, RW, 0, d(212)).map(|()| 1),
            cap::map(s(210), s(211), 0, 1, RW, 0, d(213)).map(|()| 1),
            cap::map(s(210), s(211), 9, 1, R, 0, d(214)).map(|()| 1),
        ],
        [Ok(1); 5],
    );
    let table_va = BASE_VA + 3 * (2 << 20);
    c.is("written through the new table", touch(table_va + 8, 0x6666), 0x6666);
    c.is("delete the table's last copy", cap::delete(s(210)), Ok(()));
    c.is(
        "its mappings, and its own mapping in L2, went with it",
        [cap::identify(s(212)).err(), cap::identify(s(213)).err(), cap::identify(s(214)).err()],
        [Some(ErrorCode::SlotEmpty); 3],
    );
    c.is("the frame stays", cap::identify(s(211)).map(|i| i.size), Ok(0x1000));
    c.is("the table's memory is free again", cap::retype(ram, d(215), ObjType::VNodeL3, 0xc000, 0, 1), Ok(1));
    c.is(
        "and the L2 entry takes a new table",
        cap::map(s(1), s(215), 3, 1, RW, 0, d(216)).and_then(|()| cap::map(s(215), s(211), 0, 1, RW, 0, d(217))),
        Ok(()),
    );
    c.is("which shows the frame's bytes", touch(table_va, 0x7777), 0x7777);
    // SAFETY: reading the frame through its new mapping, made just above.
    let kept = unsafe { ((table_va + 8) as *const u64).read_volatile() };
    c.is("the frame kept what was written before", kept, 0x6666);

    // An executable mapping costs the kernel cache maintenance over all of
    // it, so its size is bounded (64 MiB, the largest program image).
    const RX: u8 = 5;
    const MIB: u64 = 1 << 20;
    match bi.regions().iter().find(|r| r.kind == aos::kpi::bootinfo::RegionKind::Free && r.size >= 80 * MIB) {
        Some(big) => {
            let big_ram = CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, big.slot as u8);
            // Above what the checks before used, if it is the same region.
            let off = (big.base + 10 * MIB).next_multiple_of(2 * MIB) - big.base;
            c.is("a 66 MiB frame", cap::retype(big_ram, d(220), ObjType::Frame, off, 66 * MIB, 1), Ok(1));
            c.is(
                "66 MiB executable is refused",
                cap::map(s(1), s(220), 100, 33, RX, 0, d(221)),
                Err(ErrorCode::TooLong),
            );
            c.is("64 MiB executable is taken", cap::map(s(1), s(220), 100, 32, RX, 0, d(221)), Ok(()));
            c.is("66 MiB read-only is taken", cap::map(s(1), s(220), 200, 33, R, 0, d(222)), Ok(()));
            c.is("and cannot be made executable", cap::modify_flags(s(222), RX), Err(ErrorCode::NoRights));
            c.is("the frame and its mappings go", cap::delete(s(220)), Ok(()));
        }
        None => c.ok("80 MiB of RAM in one region", false, format_args!("none in bootinfo")),
    }

    // Read-only from now on: the next write must fault.
    c.is("modify flags to read-only", cap::modify_flags(s(13), R), Ok(()));
    c.is("modify flags cannot add rights", cap::modify_flags(s(13), RW), Err(ErrorCode::NoRights));
    // SAFETY: reading a page mapped read-only.
    let v = unsafe { (BASE_VA as *const u64).read_volatile() };
    c.is("reading still works", v, 0x4444);

    if c.failed != 0 {
        println!("vspace: {} checks failed", c.failed);
        return 1;
    }
    println!("vspace: all checks passed; now writing to a read-only page");
    touch(BASE_VA, 0x5555);
    println!("vspace: FAILED the write to a read-only page went through");
    1
}
