//! The synchronisation primitives of the engine, in one place so that loom can stand in for
//! them (`--cfg entitle_loom`). arc-swap is invisible to loom, so under loom the table cell
//! is a loom `RwLock<Arc<T>>` with the same three operations.

#[cfg(entitle_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(entitle_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::ops::DerefMut;
use std::sync::Arc;

/// A mutex for the cold paths (worker registration, sampling, snapshots, `apply`).
pub(crate) struct Mutex<T> {
    #[cfg(not(entitle_loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(entitle_loom)]
    inner: loom::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(entitle_loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(entitle_loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        #[cfg(not(entitle_loom))]
        return self.inner.lock();
        // A panic while holding the lock leaves plain data behind; carry on with it.
        #[cfg(entitle_loom)]
        return self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// The cell that holds the current limit table.
pub(crate) struct SwapCell<T> {
    #[cfg(not(entitle_loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(entitle_loom)]
    inner: loom::sync::RwLock<Arc<T>>,
}

impl<T> SwapCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Self {
            #[cfg(not(entitle_loom))]
            inner: arc_swap::ArcSwap::new(value),
            #[cfg(entitle_loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    pub(crate) fn load_full(&self) -> Arc<T> {
        #[cfg(not(entitle_loom))]
        return self.inner.load_full();
        #[cfg(entitle_loom)]
        return Arc::clone(&self.inner.read().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        #[cfg(not(entitle_loom))]
        self.inner.store(value);
        #[cfg(entitle_loom)]
        {
            *self.inner.write().unwrap_or_else(|p| p.into_inner()) = value;
        }
    }
}
