//! Thin, audited wrappers around the syscalls that `std`, `nix` and `socket2` do not cover.
//! Every `unsafe` block outside `shard/` lives here, each with a `// SAFETY:` line.

pub mod fs;
pub mod ktls;
pub mod mem;
