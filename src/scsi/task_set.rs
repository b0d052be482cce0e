//! The task set of a logical unit (SAM-5 §4.8, §8.6) and the task management that ends tasks:
//! ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, target reset, I_T nexus loss
//! and PREEMPT AND ABORT, with TAS deciding who is told TASK ABORTED (SAM-5 §5.6).
//!
//! The control mode page reports TST=001b, so each I_T nexus has a task set of its own on each
//! logical unit: a `NexusTasks`, owned by the LU's `TaskSet` and held by the transport as its
//! handle for that LU. Its lock is taken only by that nexus' own commands and by task
//! management, so sessions do not contend with each other per command.
//!
//! Ordering (SAM-5 §8.6) counts tasks in epochs: SIMPLE and HEAD OF QUEUE tasks join the
//! current epoch, an ORDERED task is an epoch of its own and opens the next one, and a task may
//! run once no task of an earlier epoch is live. Without ORDERED tasks everything is epoch 0
//! and never waits: a command costs a counter update at admission and at its end.
//!
//! A task that completes while the transport first runs it (inline) is never registered: the
//! transport's reader is busy with it, so no task management of its own nexus can reach it, and
//! a PREEMPT AND ABORT from another nexus waits at the fencing gate for its I/O to finish. A
//! task that has to wait is registered, with the handle that stops it, before it can end.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::task::{ItNexus, TaskAttr};

/// How the transport answers for a task that task management ended on behalf of another I_T
/// nexus with TAS set (SAM-5 §5.6): it sends TASK ABORTED status for `tag` (LIO's fabric
/// `queue_status`; the SCSI layer decides, the transport only delivers).
pub trait StatusSink: Send + Sync {
    fn task_aborted(&self, tag: u32);
}

/// The tasks of every I_T nexus on one logical unit.
#[derive(Default)]
pub struct TaskSet {
    nexuses: Mutex<Vec<Weak<NexusTasks>>>,
}

impl std::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSet").field("nexuses", &self.members().len()).finish()
    }
}

/// One I_T nexus' task set on one logical unit.
pub struct NexusTasks {
    nexus: Arc<ItNexus>,
    sink: Arc<dyn StatusSink>,
    state: Mutex<State>,
    /// Signalled when an epoch that later tasks may wait for has no live task left.
    epoch_ended: Notify,
    /// Signalled when a registered task ends (drains wait for it).
    task_ended: Notify,
}

#[derive(Default)]
struct State {
    epochs: Epochs,
    /// Registered (waiting or spawned) tasks by tag; `id` tells a reused tag's task apart.
    running: HashMap<u32, Running>,
    next_id: u64,
}

struct Running {
    id: u64,
    stop: AbortHandle,
    responded: Arc<AtomicBool>,
    aborted: bool,
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
    /// The task set of `nexus` on this LU, answering through `sink`; the transport keeps it for
    /// as long as the nexus exists.
    pub fn join(&self, nexus: Arc<ItNexus>, sink: Arc<dyn StatusSink>) -> Arc<NexusTasks> {
        let tasks = Arc::new(NexusTasks {
            nexus,
            sink,
            state: Mutex::default(),
            epoch_ended: Notify::new(),
            task_ended: Notify::new(),
        });
        let mut nexuses = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        nexuses.retain(|w| w.strong_count() > 0);
        nexuses.push(Arc::downgrade(&tasks));
        tasks
    }

    fn members(&self) -> Vec<Arc<NexusTasks>> {
        self.nexuses.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect()
    }

    /// Aborts every task of the nexuses `select` picks. Tasks of a nexus other than `by` are
    /// answered TASK ABORTED when `tas` is set (SAM-5 §5.6), the others end silently. The
    /// returned `Drain` completes once every one of them has ended.
    pub fn abort(&self, select: impl Fn(&ItNexus) -> bool, by: Option<&ItNexus>, tas: bool) -> Drain {
        let mut drain = Drain::default();
        for member in self.members() {
            if select(&member.nexus) {
                let report = tas && by.is_some_and(|b| *b != *member.nexus);
                drain.merge(member.abort_where(|_| true, report));
            }
        }
        drain
    }

    /// Registered tasks of `nexus` on this LU (operators' view).
    pub fn running_of(&self, nexus: &ItNexus) -> usize {
        self.members().iter().filter(|m| *m.nexus == *nexus).map(|m| m.lock().running.len()).sum()
    }
}

/// Identifies an admitted task for `Admitted::register`.
pub struct Registration {
    tasks: Arc<NexusTasks>,
    tag: u32,
    id: u64,
    responded: Arc<AtomicBool>,
}

/// A task's place in its nexus' task set; dropping it ends the task for ordering and
/// deregisters it, unless I/O the task handed to another thread still runs: that I/O holds its
/// [`keep_alive`](Admitted::keep_alive) and the task ends with it.
pub struct Admitted {
    life: Arc<Life>,
    /// False: nothing earlier holds it back.
    waits: bool,
    /// Taken by whoever sends the task's one response: the task, or an abort reporting TASK
    /// ABORTED.
    responded: Arc<AtomicBool>,
}

impl NexusTasks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn nexus(&self) -> &Arc<ItNexus> {
        &self.nexus
    }

    /// Admits a task in arrival order (the transport calls this in CmdSN order, SAM-5 §8.6).
    pub fn admit(self: &Arc<Self>, tag: u32, attr: TaskAttr) -> Admitted {
        let mut state = self.lock();
        let epochs = &mut state.epochs;
        let (epoch, may_wait) = match attr {
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
        let waits = may_wait && epochs.earlier_live(epoch);
        epochs.join(epoch);
        state.next_id += 1;
        let id = state.next_id;
        drop(state);
        let life = Arc::new(Life { tasks: self.clone(), tag, id, epoch });
        Admitted { life, waits, responded: Arc::new(AtomicBool::new(false)) }
    }

    /// True while a registered task uses `tag` (RFC 7143 §11.17.1: an ITT still in use).
    pub fn is_running(&self, tag: u32) -> bool {
        self.lock().running.contains_key(&tag)
    }

    /// SAM-5 §7.2 ABORT TASK: None when no such task is registered.
    pub fn abort_task(self: &Arc<Self>, tag: u32) -> Option<Drain> {
        let drain = self.abort_where(|t| t == tag, false);
        (!drain.is_empty()).then_some(drain)
    }

    /// SAM-5 §7.3 ABORT TASK SET, §7.5 CLEAR TASK SET (TST=001b: this nexus' tasks only), and
    /// the end of the nexus (§6.3.4): every task ends without a response.
    pub fn abort_all(self: &Arc<Self>) -> Drain {
        self.abort_where(|_| true, false)
    }

    fn abort_where(self: &Arc<Self>, select: impl Fn(u32) -> bool, report: bool) -> Drain {
        let mut reported = Vec::new();
        let mut victims = Vec::new();
        {
            let mut state = self.lock();
            for (&tag, task) in state.running.iter_mut().filter(|(tag, _)| select(**tag)) {
                // Aborted earlier and still running (its handed-off I/O has not ended): this
                // abort waits for it too, as nothing of it may run once this one is answered.
                if std::mem::replace(&mut task.aborted, true) {
                    victims.push((tag, task.id));
                    continue;
                }
                task.stop.abort();
                // The claim keeps a task that is answering right now from answering twice.
                if report && !task.responded.swap(true, Ordering::AcqRel) {
                    reported.push(tag);
                }
                victims.push((tag, task.id));
            }
        }
        for tag in reported {
            self.sink.task_aborted(tag);
        }
        let waits = if victims.is_empty() { Vec::new() } else { vec![(self.clone(), victims)] };
        Drain { waits }
    }

    /// Whether any of `tasks` is still registered.
    fn any_running(&self, tasks: &[TaskKey]) -> bool {
        let state = self.lock();
        tasks.iter().any(|(tag, id)| state.running.get(tag).is_some_and(|t| t.id == *id))
    }
}

impl Admitted {
    /// Held by I/O the task hands to another thread (`backend::owned_by`): the task is not
    /// over, for ordering and for task management, until every holder has let go.
    pub fn keep_alive(&self) -> Arc<dyn Send + Sync> {
        self.life.clone()
    }

    /// Waits for the tasks this one is ordered after (SAM-5 §8.6).
    pub async fn ordered(&self) {
        if !self.waits {
            return;
        }
        let tasks = &self.life.tasks;
        let epoch = self.life.epoch;
        loop {
            // Registered before the check, so an epoch ending in between is not missed.
            let ended = tasks.epoch_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !tasks.lock().epochs.earlier_live(epoch) {
                return;
            }
            ended.await;
        }
    }

    /// The task's response claim, shared with task management.
    pub fn responded(&self) -> &Arc<AtomicBool> {
        &self.responded
    }

    /// Claims the task's one response; false when task management already answered it.
    pub fn claim_response(&self) -> bool {
        !self.responded.swap(true, Ordering::AcqRel)
    }

    /// The task could not finish at once and now runs on its own: `spawn` starts it and
    /// returns what stops it. It is registered before it can end (the lock is held across
    /// `spawn`), so task management finds it from now on.
    pub fn register(registration: Registration, spawn: impl FnOnce() -> AbortHandle) {
        let Registration { tasks, tag, id, responded } = registration;
        let mut state = tasks.lock();
        let stop = spawn();
        state.running.insert(tag, Running { id, stop, responded, aborted: false });
    }

    /// What `register` needs once the task is handed to its own runtime task.
    pub fn registration(&self) -> Registration {
        let life = &self.life;
        Registration { tasks: life.tasks.clone(), tag: life.tag, id: life.id, responded: self.responded.clone() }
    }
}

/// What ends when the task's last holder lets go: the Admitted, or the last handed-off I/O.
struct Life {
    tasks: Arc<NexusTasks>,
    tag: u32,
    id: u64,
    epoch: u64,
}

impl Drop for Life {
    fn drop(&mut self) {
        let tasks = &self.tasks;
        let mut state = tasks.lock();
        let deregistered = match state.running.get(&self.tag) {
            Some(t) if t.id == self.id => state.running.remove(&self.tag).is_some(),
            _ => false,
        };
        let epochs = &mut state.epochs;
        let mut epoch_over = false;
        if let Some(i) = epochs.live.iter().position(|(e, _)| *e == self.epoch) {
            epochs.live[i].1 -= 1;
            if epochs.live[i].1 == 0 {
                epochs.live.remove(i);
                // Only tasks of later epochs ever wait.
                epoch_over = self.epoch < epochs.current;
            }
        }
        drop(state);
        if epoch_over {
            tasks.epoch_ended.notify_waiters();
        }
        if deregistered {
            tasks.task_ended.notify_waiters();
        }
    }
}

/// Tasks that task management aborted; awaiting it returns once every one of them has ended,
/// so nothing of theirs runs any further (it either finished or never will).
#[derive(Default)]
#[must_use = "a drain is how the caller knows the aborted tasks have ended"]
pub struct Drain {
    waits: Vec<(Arc<NexusTasks>, Vec<TaskKey>)>,
}

/// (tag, id): one task, told apart from a later task that reuses its tag.
type TaskKey = (u32, u64);

impl Drain {
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// How many tasks were aborted.
    pub fn len(&self) -> usize {
        self.waits.iter().map(|(_, v)| v.len()).sum()
    }

    /// The tags aborted in `tasks` (the transport drops their data transfers).
    pub fn tags_of(&self, tasks: &Arc<NexusTasks>) -> Vec<u32> {
        self.waits
            .iter()
            .filter(|(t, _)| Arc::ptr_eq(t, tasks))
            .flat_map(|(_, v)| v.iter().map(|(tag, _)| *tag))
            .collect()
    }

    pub fn merge(&mut self, other: Drain) {
        self.waits.extend(other.waits);
    }

    pub async fn wait(self) {
        for (tasks, victims) in self.waits {
            loop {
                let ended = tasks.task_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if !tasks.any_running(&victims) {
                    break;
                }
                ended.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u32>>);

    impl StatusSink for Recorder {
        fn task_aborted(&self, tag: u32) {
            self.0.lock().unwrap().push(tag);
        }
    }

    fn nexus(i: u8) -> Arc<ItNexus> {
        Arc::new(ItNexus::new(&format!("iqn.2026-11.test:host{i}"), [0x80, 0, 0, 0, 0, i], "iqn.t", 1))
    }

    fn member(set: &TaskSet, i: u8) -> (Arc<NexusTasks>, Arc<Recorder>) {
        let sink = Arc::new(Recorder::default());
        (set.join(nexus(i), sink.clone()), sink)
    }

    /// Spawns a task that never ends by itself and registers it, as the transport does.
    fn spawn_registered(admitted: Admitted) {
        let registration = admitted.registration();
        Admitted::register(registration, || {
            tokio::spawn(async move {
                let _held = admitted;
                std::future::pending::<()>().await
            })
            .abort_handle()
        });
    }

    #[tokio::test]
    async fn ordered_waits_for_earlier_and_blocks_later() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        let (b, _) = member(&set, 2);
        let log = Arc::new(Mutex::new(Vec::new()));
        let t1 = a.admit(1, TaskAttr::Simple);
        let t2 = a.admit(2, TaskAttr::Ordered);
        let t3 = a.admit(3, TaskAttr::Simple);
        let t4 = a.admit(4, TaskAttr::HeadOfQueue);
        // Another nexus (TST=001b) and HEAD OF QUEUE tasks are not held back.
        b.admit(1, TaskAttr::Simple).ordered().await;
        t4.ordered().await;
        t1.ordered().await;
        let run = |t: Admitted, name: &'static str| {
            let log = log.clone();
            tokio::spawn(async move {
                t.ordered().await;
                log.lock().unwrap().push(name);
            })
        };
        let j3 = run(t3, "simple-after");
        let j2 = run(t2, "ordered");
        tokio::task::yield_now().await;
        assert!(log.lock().unwrap().is_empty(), "nothing runs before the first SIMPLE ends");
        drop(t1);
        j2.await.unwrap();
        j3.await.unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["ordered", "simple-after"]);
    }

    #[test]
    fn ended_tasks_leave_no_state_behind() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        for attr in [TaskAttr::Simple, TaskAttr::Ordered, TaskAttr::HeadOfQueue].into_iter().cycle().take(300) {
            drop(a.admit(7, attr));
        }
        let state = a.lock();
        assert!(state.epochs.live.is_empty() && state.running.is_empty());
    }

    #[test]
    fn simple_tasks_without_ordered_ones_never_wait() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        let held: Vec<_> = (0..100).map(|i| a.admit(i, TaskAttr::Simple)).collect();
        assert!(held.iter().all(|t| !t.waits));
    }

    #[tokio::test]
    async fn an_aborted_task_lives_on_while_its_handed_off_io_runs_and_every_abort_waits_for_it() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        let admitted = a.admit(1, TaskAttr::Simple);
        // A write handed to a thread holds the keep-alive (backend/handoff.rs).
        let io = admitted.keep_alive();
        spawn_registered(admitted);
        let first = a.abort_task(1).expect("registered");
        let waiting = tokio::spawn(first.wait());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the future is gone but its I/O still runs");
        // A later abort (PREEMPT AND ABORT after the nexus was lost) waits for it as well.
        let second = set.abort(|_| true, None, false);
        assert_eq!(second.len(), 1, "an aborted task still running is waited for again");
        drop(io);
        waiting.await.unwrap();
        second.wait().await;
        assert!(!a.is_running(1));
    }

    #[tokio::test]
    async fn abort_task_ends_only_that_task_and_the_drain_waits_for_it() {
        let set = TaskSet::default();
        let (a, sink) = member(&set, 1);
        spawn_registered(a.admit(1, TaskAttr::Simple));
        spawn_registered(a.admit(2, TaskAttr::Simple));
        assert!(a.is_running(1) && a.is_running(2));
        assert!(a.abort_task(9).is_none(), "no such task");
        let drain = a.abort_task(1).expect("task 1 is registered");
        assert_eq!(drain.len(), 1);
        drain.wait().await;
        assert!(!a.is_running(1) && a.is_running(2));
        assert!(sink.0.lock().unwrap().is_empty(), "ABORT TASK sends no TASK ABORTED (SAM-5 §7.2)");
        a.abort_all().wait().await;
        assert!(!a.is_running(2));
    }

    #[tokio::test]
    async fn lun_wide_abort_reports_task_aborted_to_other_nexuses_only_with_tas() {
        for tas in [false, true] {
            let set = TaskSet::default();
            let (a, sink_a) = member(&set, 1);
            let (b, sink_b) = member(&set, 2);
            spawn_registered(a.admit(10, TaskAttr::Simple));
            spawn_registered(b.admit(20, TaskAttr::Simple));
            spawn_registered(b.admit(21, TaskAttr::Simple));
            let drain = set.abort(|_| true, Some(&a.nexus), tas);
            assert_eq!(drain.len(), 3);
            drain.wait().await;
            assert!(!a.is_running(10) && !b.is_running(20) && !b.is_running(21));
            assert!(sink_a.0.lock().unwrap().is_empty(), "the requester's own tasks end silently");
            let mut told = sink_b.0.lock().unwrap().clone();
            told.sort();
            assert_eq!(told, if tas { vec![20, 21] } else { vec![] }, "TAS={tas}");
        }
    }

    #[tokio::test]
    async fn a_task_that_already_answered_is_not_answered_again() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        let (b, sink_b) = member(&set, 2);
        let task = b.admit(5, TaskAttr::Simple);
        assert!(task.claim_response(), "the task answers first");
        spawn_registered(task);
        set.abort(|n| *n == *b.nexus, Some(&a.nexus), true).wait().await;
        assert!(sink_b.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_selected_nexus_loses_its_tasks_and_others_keep_theirs() {
        let set = TaskSet::default();
        let (a, _) = member(&set, 1);
        let (b, _) = member(&set, 2);
        spawn_registered(a.admit(1, TaskAttr::Simple));
        spawn_registered(b.admit(1, TaskAttr::Simple));
        set.abort(|n| *n == *b.nexus, Some(&a.nexus), false).wait().await;
        assert!(a.is_running(1) && !b.is_running(1));
        assert_eq!(set.running_of(&a.nexus), 1);
        assert_eq!(set.running_of(&b.nexus), 0);
    }
}
