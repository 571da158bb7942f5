//! Handing memory back to the system after a burst of connections.
//!
//! Measured (issue 12): six rounds of 2,000 keep-alive connections left the server's RSS
//! at 56 to 89 MB after each round had closed, against 18 MB idle, with 2.7 MB of it in
//! use. The rest was free memory glibc kept in the tokio workers' arenas: glibc returns
//! memory only from the top of a heap, and a few live chunks near the top pin each one,
//! so no `mallopt` setting or tunable (trim and mmap thresholds, one arena) helped, while
//! `malloc_trim(0)`, which releases free pages anywhere in every arena, brought RSS back to
//! 1.1x idle. jemalloc and mimalloc as the allocator did no better and cost more memory
//! per connection. So the server trims when its connection count has fallen to half a
//! recent peak: a few milliseconds on a blocking thread, at most once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Peaks under this many connections leave too little behind to be worth a trim.
const SMALL_PEAK: usize = 64;

/// The count of open connections and their peak, shared by the accept loops and the
/// trimmer. The peak is kept as connections open, so a burst that comes and goes between
/// two samples is still seen.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connections(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Open(Arc<Counts>);

impl Connections {
    /// Counts one more connection, for as long as the returned value lives.
    pub(crate) fn open(&self) -> Open {
        let open = self.0.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.peak.fetch_max(open, Ordering::Relaxed);
        Open(self.0.clone())
    }

    /// How many are open now, and the most that were open at once since the last call.
    pub(crate) fn sample(&self) -> (usize, usize) {
        let open = self.0.open.load(Ordering::Relaxed);
        let peak = self.0.peak.swap(open, Ordering::Relaxed);
        (open, peak.max(open))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decides when to trim, from the connection counts sampled about once a second.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    peak: usize,
}

impl Trimmer {
    /// Takes one sample: `open` connections now, `peak` at most since the last sample.
    /// True when the memory freed since the last trim is worth returning: the count has
    /// fallen to half a peak of at least [`SMALL_PEAK`]. The peak then restarts from the
    /// present count.
    pub(crate) fn sample(&mut self, (open, peak): (usize, usize)) -> bool {
        self.peak = self.peak.max(peak);
        if self.peak >= SMALL_PEAK && open <= self.peak / 2 {
            self.peak = open;
            return true;
        }
        false
    }
}

/// Returns the free memory of every malloc arena to the system (glibc's `malloc_trim`);
/// nothing on other C libraries, whose allocators return memory by themselves or not at
/// all. Blocks for a few milliseconds: call it off the event loop.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: malloc_trim takes no pointer and is safe to call from any thread at any
        // time; it only returns free pages, under each arena's own lock.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_follows_the_fall_from_a_peak_not_small_swings() {
        let mut trimmer = Trimmer::default();
        // Small servers never trim.
        assert!(
            ![10, 40, 0, 63, 0]
                .into_iter()
                .any(|n| trimmer.sample((n, n)))
        );
        // A burst of 2,000 closing: one trim at half the peak, another as the rest closes.
        let mut trimmer = Trimmer::default();
        let trims: Vec<bool> = [0, 2000, 1500, 900, 600, 0, 0]
            .into_iter()
            .map(|n| trimmer.sample((n, n)))
            .collect();
        assert_eq!(trims, [false, false, false, true, false, true, false]);
        // A burst that came and went between two samples: seen by its peak.
        let mut trimmer = Trimmer::default();
        assert!(trimmer.sample((0, 2000)));
    }

    #[test]
    fn connections_and_their_peak_are_counted() {
        let connections = Connections::default();
        let a = connections.open();
        let b = connections.open();
        assert_eq!(connections.sample(), (2, 2));
        drop(a);
        drop(b);
        // The peak since the last sample is kept after the connections close.
        let c = connections.open();
        drop(c);
        assert_eq!(connections.sample(), (0, 2));
        assert_eq!(connections.sample(), (0, 0));
        trim();
    }
}
