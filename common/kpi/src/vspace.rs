//! The layout of a domain's address space that kernel and runtime share.

/// Lowest address a program may be linked at; below it stays unmapped so
/// null dereferences fault.
pub const USER_MIN: u64 = 0x40_0000;
/// One past the highest user address (TTBR0 covers 48 bits).
pub const USER_END: u64 = 1 << 48;
/// The arguments page.
pub const ARGS_VADDR: u64 = 0x7f_ffff_f000;
/// The bootinfo page (init only).
pub const BOOTINFO_VADDR: u64 = 0x7f_ffff_e000;
/// Every domain's dispatcher frame: the shared part ([`crate::dispatcher`])
/// and then LMP receive rings. Init's is made by the kernel; spawn puts a
/// child's at the same address.
pub const DISPFRAME_VADDR: u64 = 0x7f_fffe_4000;
/// Bytes of init's dispatcher frame: the shared part and a receive ring for
/// each process it spawns (M3).
pub const INIT_DISPFRAME_SIZE: u64 = 96 << 10;
/// Bytes of a spawned domain's dispatcher frame: the shared part and a few
/// receive rings.
pub const CHILD_DISPFRAME_SIZE: u64 = 16 << 10;
/// The paging-state page a parent shares with a child it spawned: the
/// regions mapped in the child's address space (M2, book ch. 4.10).
pub const PAGING_STATE_VADDR: u64 = 0x7f_ffff_d000;
/// Top of the initial stack (grows down), with a guard page above it.
pub const STACK_TOP: u64 = 0x7f_fffe_0000;
/// Size of the initial stack.
pub const STACK_SIZE: u64 = 64 * 1024;
/// Largest program image the kernel loads at boot.
pub const IMAGE_MAX: u64 = 64 << 20;

// The frame lies between the stack (and the guard page above it) and the
// paging-state page.
const _: () = assert!(STACK_TOP + 0x1000 <= DISPFRAME_VADDR);
const _: () = assert!(DISPFRAME_VADDR + INIT_DISPFRAME_SIZE <= PAGING_STATE_VADDR);
const _: () = assert!(CHILD_DISPFRAME_SIZE <= INIT_DISPFRAME_SIZE);
