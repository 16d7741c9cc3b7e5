//! Milestone 1 (book ch. 3): physical memory managed in user space over RAM
//! capabilities. [`mm`] decides which memory to hand out and splits it with
//! retype.

#![no_std]

pub mod mm;
