//! Attribution: turning the kernel's (dev, ino) and stack keys into paths and symbol names.
mod by_handle;
pub mod callers;
pub mod files;
pub mod symbols;
