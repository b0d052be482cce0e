//! Per-LUN byte-range lock: commands that touch overlapping ranges run one after another,
//! commands on disjoint ranges never wait for each other.
//!
//! Why: SBC-3 §5.2 makes COMPARE AND WRITE atomic with respect to every other command on the
//! logical unit (from any I_T nexus); ORWRITE and WRITE AND VERIFY need the same read-modify-
//! write isolation. READ takes the range shared, anything that writes takes it exclusive, so a
//! READ never sees half of a COMPARE AND WRITE. Requests are granted in arrival order among
//! those that overlap (a waiting writer holds back later readers), so nobody starves.
//! The table mutex is held only to scan the short list of in-flight ranges, never across I/O.

use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
struct Entry {
    ticket: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

#[derive(Debug, Default)]
struct Table {
    next_ticket: u64,
    /// Granted and waiting requests, in arrival order.
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
pub(crate) struct RangeLock {
    table: Mutex<Table>,
    released: Notify,
}

/// Holds a range until dropped (also when the command's future is dropped while waiting).
#[derive(Debug)]
pub(crate) struct RangeGuard<'a> {
    lock: &'a RangeLock,
    ticket: u64,
}

impl RangeLock {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until [start, start+len) may be used shared (`exclusive` false) or alone.
    pub(crate) async fn lock(&self, start: u64, len: u64, exclusive: bool) -> RangeGuard<'_> {
        let end = start.saturating_add(len.max(1));
        let ticket = {
            let mut table = self.table();
            let ticket = table.next_ticket;
            table.next_ticket += 1;
            table.entries.push(Entry { ticket, start, end, exclusive });
            ticket
        };
        let guard = RangeGuard { lock: self, ticket };
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Register interest before checking, so a release in between is not missed.
            released.as_mut().enable();
            if self.may_proceed(ticket) {
                return guard;
            }
            released.await;
        }
    }

    /// True when no earlier request overlaps this one incompatibly.
    fn may_proceed(&self, ticket: u64) -> bool {
        let table = self.table();
        let Some(me) = table.entries.iter().find(|e| e.ticket == ticket) else {
            return true;
        };
        !table
            .entries
            .iter()
            .take_while(|e| e.ticket != ticket)
            .any(|e| e.start < me.end && me.start < e.end && (e.exclusive || me.exclusive))
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.table().entries.len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.lock.table().entries.retain(|e| e.ticket != self.ticket);
        self.lock.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::timeout;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn overlapping_shared_ranges_coexist() {
        let lock = RangeLock::default();
        let _a = lock.lock(0, 512, false).await;
        let b = timeout(SHORT, lock.lock(256, 512, false)).await;
        assert!(b.is_ok(), "two readers of overlapping ranges must not wait");
        let c = timeout(SHORT, lock.lock(256, 512, true)).await;
        assert!(c.is_err(), "a writer overlapping a reader must wait");
    }

    #[tokio::test]
    async fn disjoint_exclusive_ranges_do_not_wait() {
        let lock = RangeLock::default();
        let _a = lock.lock(0, 512, true).await;
        let b = timeout(SHORT, lock.lock(512, 512, true)).await;
        assert!(b.is_ok(), "adjacent, non-overlapping range must not wait");
    }

    #[tokio::test]
    async fn overlapping_exclusive_waits_until_release() {
        let lock = Arc::new(RangeLock::default());
        let a = lock.lock(0, 4096, true).await;
        let l2 = lock.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(1024, 512, false).await;
        });
        tokio::time::sleep(SHORT).await;
        assert!(!waiter.is_finished(), "reader must wait for the overlapping writer");
        drop(a);
        timeout(Duration::from_secs(2), waiter).await.expect("released").unwrap();
        assert_eq!(lock.in_flight(), 0);
    }

    #[tokio::test]
    async fn waiting_writer_holds_back_later_readers_and_cancel_cleans_up() {
        let lock = RangeLock::default();
        let reader = lock.lock(0, 512, false).await;
        // A writer queues behind the reader; a later reader must queue behind the writer.
        let writer = timeout(SHORT, lock.lock(0, 512, true)).await;
        assert!(writer.is_err(), "writer waits for the reader");
        // The cancelled writer's entry is gone, so a new reader proceeds at once.
        assert_eq!(lock.in_flight(), 1);
        assert!(timeout(SHORT, lock.lock(0, 512, false)).await.is_ok());
        drop(reader);
        assert_eq!(lock.in_flight(), 0);
    }
}
