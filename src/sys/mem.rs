//! Scratch memory that goes back to the kernel when dropped: an anonymous private mapping,
//! unmapped on drop, whatever the allocator would keep.
//!
//! A password check (argon2) fills tens of MiB once and is done; from the allocator such a
//! buffer would stay resident after a login flood (measured: 13 MiB before, 38 MiB after 200
//! failed logins, for good). Mapped and unmapped per check, the process's RSS returns to its
//! baseline when the checks stop, at the cost of faulting the pages in (in one go:
//! `MAP_POPULATE`).

use std::io;

use argon2::Block;
use memmap2::{MmapMut, MmapOptions};

/// `count` zero-filled argon2 memory blocks in a mapping of their own.
pub struct Blocks {
    map: MmapMut,
    count: usize,
}

impl Blocks {
    pub fn new(count: usize) -> io::Result<Blocks> {
        let bytes = count
            .checked_mul(size_of::<Block>())
            .filter(|&b| b > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "block count"))?;
        let map = MmapOptions::new().len(bytes).populate().map_anon()?;
        Ok(Blocks { map, count })
    }

    pub fn blocks(&mut self) -> &mut [Block] {
        const { assert!(size_of::<Block>() == 1024 && align_of::<Block>() <= 4096) };
        // The mapping is page-aligned (at least Block's alignment, checked above) and
        // `count * size_of::<Block>()` bytes long; Block is 128 plain u64 words, so the zeroed
        // (or earlier written) bytes are valid Blocks.
        // SAFETY: aligned, sized and valid as above; `&mut self` keeps the mapping alive and unaliased.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<Block>(), self.count) }
    }
}

/// Turn transparent huge pages off for this process, for every page faulted in from now on.
///
/// The allocator asks for huge pages on its arenas (`MADV_HUGEPAGE`), so with THP on, the first
/// touch of any 2 MiB region of the heap faults in (and clears) a whole huge page, and touching
/// it again after the allocator has given the memory back faults in and clears another. The
/// server's heap is buffers of a few KiB to a few hundred KiB that come and go: huge pages buy it
/// no TLB reach worth having, and cost RSS in 2 MiB steps (an idle server: 16 MiB with them,
/// 11 MiB without) and CPU in those clears (11% of an uncached NLST of 10,000 names was in
/// `do_huge_pmd_anonymous_page`; without huge pages it took 7% less CPU). Page-cache pages,
/// which carry the downloads, are not affected.
pub fn no_transparent_huge_pages() -> io::Result<()> {
    nix::sys::prctl::set_thp_disable(true).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_zeroed_writable_and_sized() {
        let mut b = Blocks::new(3).unwrap();
        let blocks = b.blocks();
        assert_eq!(blocks.len(), 3);
        blocks[2] = Block::default();
        assert!(Blocks::new(0).is_err());
        assert!(Blocks::new(usize::MAX).is_err());
    }
}
