//! Task attributes (SAM-5 §8.6): execution order within one task set. The control mode page
//! reports TST=001b, so each I_T nexus has its own task set per LUN: a SIMPLE task runs after
//! the last ORDERED task before it; an ORDERED task runs after every task before it; a HEAD OF
//! QUEUE task runs at once. Tasks are admitted here in CmdSN order by the connection's reader.
//!
//! Tasks are counted in epochs: SIMPLE and HEAD OF QUEUE tasks join the current epoch, an
//! ORDERED task is an epoch of its own and opens the next one, and a task may run once no task
//! of an earlier epoch is live. Without ORDERED tasks everything is epoch 0 and never waits:
//! a command costs a counter update at admission and at its end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::scsi::TaskAttr;

/// One LUN's task set.
#[derive(Default)]
struct TaskSet {
    epochs: Mutex<Epochs>,
    /// Signalled when an epoch that later tasks may wait for has no live task left.
    epoch_ended: Notify,
}

#[derive(Default)]
struct Epochs {
    /// The epoch new SIMPLE and HEAD OF QUEUE tasks join.
    current: u64,
    /// Live tasks per epoch, oldest first; epochs without live tasks are dropped.
    live: VecDeque<(u64, usize)>,
}

impl Epochs {
    fn join(&mut self, epoch: u64) {
        match self.live.back_mut() {
            Some((e, n)) if *e == epoch => *n += 1,
            _ => self.live.push_back((epoch, 1)),
        }
    }

    /// True while a task of an epoch before `epoch` is live.
    fn earlier_live(&self, epoch: u64) -> bool {
        self.live.front().is_some_and(|(e, _)| *e < epoch)
    }
}

impl TaskSet {
    fn lock(&self) -> MutexGuard<'_, Epochs> {
        self.epochs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a newly admitted task must wait for before it executes.
pub struct Gate {
    /// None: nothing earlier holds it back.
    wait_in: Option<(Arc<TaskSet>, u64)>,
}

impl Gate {
    pub async fn wait(self) {
        let Some((set, epoch)) = self.wait_in else { return };
        loop {
            // Registered before the check, so an epoch ending in between is not missed.
            let ended = set.epoch_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !set.lock().earlier_live(epoch) {
                return;
            }
            ended.await;
        }
    }
}

/// Held by a running task; dropping it ends the task for the ordering of later ones.
pub struct Finished {
    set: Arc<TaskSet>,
    epoch: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut epochs = self.set.lock();
        let Some(i) = epochs.live.iter().position(|(e, _)| *e == self.epoch) else { return };
        epochs.live[i].1 -= 1;
        if epochs.live[i].1 == 0 {
            epochs.live.remove(i);
            // Only tasks of later epochs ever wait.
            let waiters_possible = self.epoch < epochs.current;
            drop(epochs);
            if waiters_possible {
                self.set.epoch_ended.notify_waiters();
            }
        }
    }
}

#[derive(Default)]
pub struct TaskOrdering {
    luns: HashMap<u64, Arc<TaskSet>>,
}

impl TaskOrdering {
    pub fn admit(&mut self, lun: u64, attr: TaskAttr) -> (Gate, Finished) {
        let set = self.luns.entry(lun).or_default().clone();
        let mut epochs = set.lock();
        let (epoch, waits) = match attr {
            TaskAttr::Ordered => {
                let epoch = epochs.current + 1;
                epochs.current = epoch + 1;
                (epoch, true)
            }
            TaskAttr::HeadOfQueue => (epochs.current, false),
            // ACA tasks are never accepted while no ACA condition exists (NACA=0): they run
            // as SIMPLE, like untagged tasks.
            TaskAttr::Simple | TaskAttr::Untagged | TaskAttr::Aca => (epochs.current, true),
        };
        let must_wait = waits && epochs.earlier_live(epoch);
        epochs.join(epoch);
        drop(epochs);
        let gate = Gate { wait_in: must_wait.then(|| (set.clone(), epoch)) };
        (gate, Finished { set, epoch })
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
    fn ended_tasks_leave_no_state_behind() {
        let mut o = TaskOrdering::default();
        for attr in [TaskAttr::Simple, TaskAttr::Ordered, TaskAttr::HeadOfQueue].into_iter().cycle().take(300) {
            let (_g, f) = o.admit(0, attr);
            drop(f);
        }
        assert!(o.luns[&0].lock().live.is_empty());
    }

    #[test]
    fn simple_tasks_without_ordered_ones_never_wait() {
        let mut o = TaskOrdering::default();
        let held: Vec<_> = (0..100).map(|_| o.admit(0, TaskAttr::Simple)).collect();
        assert!(held.iter().all(|(g, _)| g.wait_in.is_none()));
    }
}
