//! The snapshot's stacks as the report names them: function names, outermost first, and the
//! caller class, each worked out once per stack however many rows name it.

use std::collections::{BTreeMap, HashMap};

use crate::attribution::{callers, symbols::KernelSymbols};

/// The snapshot's stacks, each symbolized and classified once.
pub(super) struct Stacks<'a> {
    stacks: &'a BTreeMap<u64, Vec<u64>>,
    symbols: &'a KernelSymbols,
    pub(super) seen: HashMap<u64, (Vec<String>, &'static str)>,
}

impl<'a> Stacks<'a> {
    pub(super) fn new(stacks: &'a BTreeMap<u64, Vec<u64>>, symbols: &'a KernelSymbols) -> Self {
        Self { stacks, symbols, seen: HashMap::new() }
    }

    fn get(&mut self, stack: u64) -> &(Vec<String>, &'static str) {
        let (stacks, symbols) = (self.stacks, self.symbols);
        self.seen.entry(stack).or_insert_with(|| {
            let frames = match stacks.get(&stack) {
                Some(ips) => symbols.frames(ips),
                None => vec![callers::NO_STACK_FRAME.to_owned()],
            };
            let class = callers::classify(&frames);
            (frames, class)
        })
    }

    /// Function names, outermost first; a stack not kept reads as one placeholder frame.
    pub(super) fn frames(&mut self, stack: u64) -> Vec<String> {
        self.get(stack).0.clone()
    }

    /// The caller class (fork, mmap, ...).
    pub(super) fn class(&mut self, stack: u64) -> &'static str {
        self.get(stack).1
    }
}
