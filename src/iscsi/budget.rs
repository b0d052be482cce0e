//! The session's command data budget: write data kept for a command and read data it produces
//! are granted from one pool of `max_session_data_bytes`, first come first served in CmdSN
//! order. A command that does not fit waits — a write gets no R2T, a read does not execute —
//! and while any command waits, finished commands do not reopen their CmdSN slot, so MaxCmdSN
//! stops advancing and the initiator stops sending (RFC 7143 §4.2.2.1 flow control).
//!
//! Waiting is strictly FIFO and a granted command never waits for a later one (task ordering
//! only makes later tasks wait for earlier ones), so the head of the queue is always granted
//! once earlier commands end. A command larger than the whole pool is granted the whole pool.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::{oneshot, AcquireError, OwnedSemaphorePermit, Semaphore};

use super::limits;
use super::session::SeqState;

/// Budget accounting unit: permits are KiB so 16 GiB fits a u32 permit count.
const UNIT: u64 = 1024;

/// Budget granted to one command; returned when it is dropped.
pub struct DataPermit {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
}

impl Drop for DataPermit {
    fn drop(&mut self) {
        limits::sub_held(self.bytes);
    }
}

/// How a command task obtains its budget.
pub enum Ticket {
    /// The command moves no data.
    None,
    Granted(DataPermit),
    /// Queued: the permit arrives when earlier commands have returned enough.
    Wait(oneshot::Receiver<DataPermit>),
}

impl Ticket {
    /// The permit, or None when the command was aborted while it waited.
    pub async fn redeem(self) -> Option<Option<DataPermit>> {
        match self {
            Ticket::None => Some(None),
            Ticket::Granted(p) => Some(Some(p)),
            Ticket::Wait(rx) => rx.await.ok().map(Some),
        }
    }
}

pub struct DataBudget {
    pool: Arc<Semaphore>,
    capacity_units: u32,
    /// Commands are waiting: slot releases are withheld.
    pressure: AtomicBool,
    withheld: AtomicU32,
}

impl DataBudget {
    pub fn new(max_bytes: u64) -> DataBudget {
        let capacity_units = (max_bytes / UNIT).clamp(1, u32::MAX as u64 >> 3) as u32;
        DataBudget {
            pool: Arc::new(Semaphore::new(capacity_units as usize)),
            capacity_units,
            pressure: AtomicBool::new(false),
            withheld: AtomicU32::new(0),
        }
    }

    fn units(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, self.capacity_units as u64) as u32
    }

    fn wrap(permit: OwnedSemaphorePermit) -> DataPermit {
        let bytes = permit.num_permits() as u64 * UNIT;
        limits::add_held(bytes);
        DataPermit { _permit: permit, bytes }
    }

    /// A finished command's CmdSN slot: reopened now, or later if commands wait for budget.
    pub fn release_slot(&self, seq: &SeqState) {
        if self.pressure.load(Ordering::SeqCst) {
            self.withheld.fetch_add(1, Ordering::SeqCst);
            // The reader may have lifted the pressure between the load and the add.
            if self.pressure.load(Ordering::SeqCst) {
                return;
            }
            self.flush(seq);
        } else {
            seq.complete_command();
        }
    }

    fn set_pressure(&self, on: bool, seq: &SeqState) {
        self.pressure.store(on, Ordering::SeqCst);
        if !on {
            self.flush(seq);
        }
    }

    fn flush(&self, seq: &SeqState) {
        for _ in 0..self.withheld.swap(0, Ordering::SeqCst) {
            seq.complete_command();
        }
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

struct Waiting {
    itt: u32,
    units: u32,
    grant: oneshot::Sender<DataPermit>,
}

/// The FIFO of commands waiting for budget, owned by the connection's reader.
#[derive(Default)]
pub struct Admission {
    waiting: VecDeque<Waiting>,
    /// The pending acquisition for the head of the queue; kept across loop turns so the head
    /// keeps its place in the semaphore's own FIFO.
    /// (A Mutex only to make the reader `Sync`; it is never contended.)
    head: Option<Mutex<Acquire>>,
}

impl Admission {
    /// Resolves with the head's permit; pending forever when nothing waits.
    pub fn next_grant(&mut self) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + '_ {
        std::future::poll_fn(move |cx| match self.head.as_mut() {
            Some(f) => f.get_mut().unwrap().as_mut().poll(cx),
            None => Poll::Pending,
        })
    }
}

impl Admission {
    /// Budget for a command that will hold `bytes` of data: granted now when nothing waits
    /// and it fits, else queued behind the commands already waiting.
    pub fn admit(&mut self, budget: &DataBudget, itt: u32, bytes: u64, seq: &SeqState) -> Ticket {
        if bytes == 0 {
            return Ticket::None;
        }
        let units = budget.units(bytes);
        if self.waiting.is_empty() {
            if let Ok(p) = budget.pool.clone().try_acquire_many_owned(units) {
                return Ticket::Granted(DataBudget::wrap(p));
            }
        }
        let (grant, rx) = oneshot::channel();
        self.waiting.push_back(Waiting { itt, units, grant });
        budget.set_pressure(true, seq);
        if self.head.is_none() {
            self.head = Some(Mutex::new(Box::pin(budget.pool.clone().acquire_many_owned(units))));
        }
        Ticket::Wait(rx)
    }

    /// The head of the queue got its permit: hands it over, then serves whoever else fits.
    /// Returns the ITTs granted, in order.
    pub fn on_granted(
        &mut self,
        budget: &DataBudget,
        permit: Result<OwnedSemaphorePermit, AcquireError>,
        seq: &SeqState,
    ) -> Vec<u32> {
        self.head = None;
        let mut granted = Vec::new();
        let Ok(permit) = permit else { return granted };
        let mut next = Some(permit);
        while let Some(permit) = next.take() {
            let Some(w) = self.waiting.pop_front() else { break };
            // An error: the task was aborted while it waited; the permit went back.
            if w.grant.send(DataBudget::wrap(permit)).is_ok() {
                granted.push(w.itt);
            }
            while let Some(front) = self.waiting.front() {
                if front.grant.is_closed() {
                    // Aborted while waiting.
                    self.waiting.pop_front();
                    continue;
                }
                match budget.pool.clone().try_acquire_many_owned(front.units) {
                    Ok(p) => next = Some(p),
                    Err(_) => {
                        let units = front.units;
                        self.head = Some(Mutex::new(Box::pin(budget.pool.clone().acquire_many_owned(units))));
                    }
                }
                break;
            }
        }
        if self.waiting.is_empty() {
            budget.set_pressure(false, seq);
        }
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_slots_reopen_when_pressure_lifts() {
        let seq = SeqState::new(10, 4);
        let budget = DataBudget::new(1 << 20);
        seq.accept_command();
        seq.accept_command();
        assert_eq!(seq.get(), (12, 13));
        budget.set_pressure(true, &seq);
        budget.release_slot(&seq);
        assert_eq!(seq.get(), (12, 13), "MaxCmdSN does not advance while commands wait for budget");
        budget.set_pressure(false, &seq);
        assert_eq!(seq.get(), (12, 14));
        budget.release_slot(&seq);
        assert_eq!(seq.get(), (12, 15));
    }

    #[test]
    fn oversized_requests_take_the_whole_pool() {
        let budget = DataBudget::new(1 << 20);
        assert_eq!(budget.units(64 << 20), 1024);
        assert_eq!(budget.units(1), 1);
        let p = DataBudget::wrap(budget.pool.clone().try_acquire_many_owned(budget.units(64 << 20)).unwrap());
        assert!(budget.pool.clone().try_acquire_many_owned(1).is_err());
        drop(p);
        assert!(budget.pool.clone().try_acquire_many_owned(1024).is_ok());
    }
}
