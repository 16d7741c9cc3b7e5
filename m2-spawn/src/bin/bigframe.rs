//! The child half of the large-frame check (book ch. 4.22): waits until
//! its parent shares a 64 MiB frame (it appears in the paging-state page),
//! checks the parent's half word by word, writes its own half, and exits.
//! It also checks that the paging-state page lists its own code, stack
//! and arguments, and then maps a page of its own where that page shows
//! nothing: from the RAM in its BASE_PAGE_CN, with page tables into its
//! own L0 table (PAGECN slot 0) and slots of SLOT_ALLOC0, which shows its
//! CSpace is laid out as ch. 4.9 says and that it holds its VSpace.

#![cfg_attr(target_os = "none", no_std, no_main)]

aos::main!(run);

#[cfg(target_os = "none")]
fn run(_: &aos::Args) -> i32 {
    use aos::kpi::vspace::{ARGS_VADDR, STACK_TOP};
    use grading::m2::{BIG_BYTES, CHILD_SEED, PARENT_SEED};
    use m2_spawn::layout::Layout;

    let layout = Layout::own();
    let code = run as *const () as u64;
    let stack = &layout as *const _ as u64;
    let listed = [code, stack, ARGS_VADDR, STACK_TOP - 8].iter().all(|&va| layout.find(va).is_some());
    aos::println!("bigframe: paging state lists code, stack and arguments: {listed}");

    let mut shared = None;
    grading::yield_until(30, || {
        shared = layout.regions().iter().find(|r| r.bytes == BIG_BYTES).copied();
        shared.is_some()
    });
    let Some(region) = shared else {
        aos::println!("bigframe: no frame shared within 30 s");
        return 2;
    };
    let words = (BIG_BYTES / 8) as usize;
    // SAFETY: the parent mapped this region read-write for this process
    // and listed it in the paging-state page; it writes only the first
    // half, and reads the second after this process exits.
    let m = unsafe { core::slice::from_raw_parts_mut(region.vaddr as *mut u64, words) };
    let (parents, mine) = m.split_at_mut(words / 2);
    let bad = parents.iter().enumerate().filter(|&(i, w)| *w != PARENT_SEED ^ (i as u64 * 8)).count();
    for (i, w) in mine.iter_mut().enumerate() {
        *w = CHILD_SEED ^ ((i + words / 2) as u64 * 8);
    }
    aos::println!("bigframe: {} words of the shared frame at {:#x}, {bad} differ", words / 2, region.vaddr);
    let own = map_own_page(layout);
    match own {
        Ok(va) => aos::println!("bigframe: mapped a page of its own at {va:#x}"),
        Err(e) => aos::println!("bigframe: could not map a page of its own: {e}"),
    }
    if listed && bad == 0 && own.is_ok() { 0 } else { 1 }
}

/// Maps a page at the first level-0 entry (from 2 up) the paging state
/// shows empty, writes it and reads it back; returns its address.
#[cfg(target_os = "none")]
fn map_own_page(layout: &m2_spawn::layout::Layout) -> Result<u64, aos::kpi::ErrorCode> {
    use aos::cap::{self, CapRef, Dest, ObjType};
    use aos::kpi::ErrorCode;
    use aos::kpi::cspace::{PAGECN_SLOT_VROOT, ROOTCN_SLOT_BASE_PAGE_CN, ROOTCN_SLOT_PAGECN, ROOTCN_SLOT_SLOT_ALLOC0};

    const ENTRY: u64 = 1 << 39;
    let l0 = (2..512u64)
        .find(|i| !layout.regions().iter().any(|r| r.vaddr < (i + 1) * ENTRY && i * ENTRY < r.end()))
        .ok_or(ErrorCode::OutOfMemory)?;
    let ram = |i: u8| CapRef::slot(ROOTCN_SLOT_BASE_PAGE_CN as u32, i);
    let cn = ROOTCN_SLOT_SLOT_ALLOC0 as u32;
    let (s, d) = (|i: u8| CapRef::slot(cn, i), |i: u32| Dest::l2(cn, i));
    for (i, ty) in [ObjType::VNodeL1, ObjType::VNodeL2, ObjType::VNodeL3, ObjType::Frame].into_iter().enumerate() {
        cap::retype(ram(i as u8), d(i as u32), ty, 0, 4096, 1)?;
    }
    let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
    cap::map(vroot, s(0), l0 as u16, 1, 3, 0, d(4))?;
    cap::map(s(0), s(1), 0, 1, 3, 0, d(5))?;
    cap::map(s(1), s(2), 0, 1, 3, 0, d(6))?;
    cap::map(s(2), s(3), 0, 1, 3, 0, d(7))?;
    let va = l0 * ENTRY;
    // SAFETY: the page was just mapped read-write at `va`, in a level-0
    // entry nothing else of this process uses.
    let back = unsafe {
        (va as *mut u64).write_volatile(va ^ 0x5a5a);
        (va as *const u64).read_volatile()
    };
    if back == va ^ 0x5a5a { Ok(va) } else { Err(ErrorCode::InvalidArgument) }
}

#[cfg(not(target_os = "none"))]
fn run(_: &aos::Args) -> i32 {
    0
}
