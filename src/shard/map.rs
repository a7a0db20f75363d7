//! File mappings that only the kernel reads: the `mmap` data path sends straight from the page
//! cache with io_uring SEND. User space never dereferences the mapping, so a file truncated under
//! us makes the send fail with EFAULT instead of killing the process with SIGBUS.

use std::fs::File;
use std::io;

/// A read-only shared mapping of a whole file, exposed only as an address range for the kernel.
pub struct SendMap {
    map: memmap2::Mmap,
}

impl SendMap {
    pub fn new(file: &File) -> io::Result<SendMap> {
        // A file truncated under the mapping would make a user-space read SIGBUS; this type never
        // hands out `&[u8]`, so only the kernel reads it, inside send(2), which reports EFAULT.
        // SAFETY: the mapping is never dereferenced in user space (see above).
        let map = unsafe { memmap2::MmapOptions::new().map(file) }?;
        Ok(SendMap { map })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The address of byte `offset` (for the kernel only).
    pub(super) fn ptr(&self, offset: usize) -> *const u8 {
        self.map.as_ptr().wrapping_add(offset)
    }
}
