//! Attribution: turning the kernel's (dev, ino) and stack keys into paths and symbol names.
pub mod callers;
pub mod files;
pub mod symbols;
