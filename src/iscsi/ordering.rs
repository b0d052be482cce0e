//! Task attributes (SAM-5 §8.6): execution order within one task set. The control mode page
//! reports TST=001b, so each I_T nexus has its own task set per LUN: a SIMPLE task runs after
//! the last ORDERED task before it; an ORDERED task runs after every task before it; a HEAD OF
//! QUEUE task runs at once. Tasks are admitted here in CmdSN order by the connection's reader.

use std::collections::HashMap;

use tokio::sync::watch;

use crate::scsi::TaskAttr;

/// Resolves when a task has ended (its [`Finished`] dropped).
#[derive(Clone)]
pub struct Done(watch::Receiver<()>);

impl Done {
    async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }

    fn is_done(&self) -> bool {
        self.0.has_changed().is_err()
    }
}

/// Held by a running task; dropping it tells later tasks that it has ended.
pub struct Finished(#[allow(dead_code)] watch::Sender<()>);

/// What a newly admitted task must wait for before it executes.
pub struct Gate(Vec<Done>);

impl Gate {
    pub async fn wait(self) {
        for d in self.0 {
            d.wait().await;
        }
    }
}

#[derive(Default)]
struct LunOrder {
    /// The latest ORDERED task.
    barrier: Option<Done>,
    /// Tasks admitted since that barrier.
    since: Vec<Done>,
}

/// Ended tasks are forgotten once this many accumulate.
const PRUNE_AT: usize = 64;

#[derive(Default)]
pub struct TaskOrdering {
    luns: HashMap<u64, LunOrder>,
}

impl TaskOrdering {
    pub fn admit(&mut self, lun: u64, attr: TaskAttr) -> (Gate, Finished) {
        let (tx, rx) = watch::channel(());
        let done = Done(rx);
        let order = self.luns.entry(lun).or_default();
        if order.since.len() >= PRUNE_AT {
            order.since.retain(|d| !d.is_done());
        }
        let gate = match attr {
            TaskAttr::Ordered => {
                let mut waits: Vec<Done> = std::mem::take(&mut order.since);
                waits.extend(order.barrier.replace(done));
                Gate(waits)
            }
            TaskAttr::HeadOfQueue => {
                order.since.push(done);
                Gate(Vec::new())
            }
            // ACA tasks are never accepted while no ACA condition exists (NACA=0): they run
            // as SIMPLE, like untagged tasks.
            TaskAttr::Simple | TaskAttr::Untagged | TaskAttr::Aca => {
                order.since.push(done);
                Gate(order.barrier.iter().cloned().collect())
            }
        };
        (gate, Finished(tx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn ordered_waits_for_earlier_and_blocks_later() {
        let mut o = TaskOrdering::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (g1, f1) = o.admit(0, TaskAttr::Simple);
        let (g2, f2) = o.admit(0, TaskAttr::Ordered);
        let (g3, f3) = o.admit(0, TaskAttr::Simple);
        let (g4, _f4) = o.admit(0, TaskAttr::HeadOfQueue);
        let (g5, _f5) = o.admit(1, TaskAttr::Simple);
        // Other LUNs and HEAD OF QUEUE tasks are not held back.
        g4.wait().await;
        g5.wait().await;
        g1.wait().await;
        let spawn = |g: Gate, f: Finished, name: &'static str| {
            let log = log.clone();
            tokio::spawn(async move {
                g.wait().await;
                log.lock().unwrap().push(name);
                drop(f);
            })
        };
        let t3 = spawn(g3, f3, "simple-after");
        let t2 = spawn(g2, f2, "ordered");
        tokio::task::yield_now().await;
        assert!(log.lock().unwrap().is_empty(), "nothing runs before the first SIMPLE ends");
        drop(f1);
        t2.await.unwrap();
        t3.await.unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["ordered", "simple-after"]);
    }

    #[test]
    fn ended_tasks_are_pruned() {
        let mut o = TaskOrdering::default();
        for _ in 0..(PRUNE_AT * 3) {
            let (_g, f) = o.admit(0, TaskAttr::Simple);
            drop(f);
        }
        assert!(o.luns[&0].since.len() <= PRUNE_AT);
    }
}
