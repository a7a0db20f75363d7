//! Log output: transfer and session records and `log` lines, formatted and written by one thread.
//!
//! Shards never write logs themselves (design.md section 9): they build plain records and hand
//! them to the log thread, which owns the files and stderr.

pub mod json;
pub mod record;
pub mod xferlog;

pub use record::{Direction, SessionRecord, TransferRecord};
