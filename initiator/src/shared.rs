//! A connection many tasks use at once: a driver task owns the pipelined `Connection` and
//! submits what callers send it, and each caller waits for its own command's status. What the
//! reservation tests need: many writes in flight from many tasks, R2T hooks, a caller that gives
//! up on a command the target never answers (aborted by PREEMPT AND ABORT, SAM-5 §5.6).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Completion, Connection, R2tPolicy, Request};
use crate::error::Error;
use crate::login::LoginOptions;
use crate::url::IscsiUrl;

/// What a command ended with.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u8,
    pub sense: Option<Bytes>,
    pub data: Bytes,
}

impl Reply {
    /// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        crate::sense::triple(self.sense.as_deref()?)
    }
}

enum Order {
    Command(Request, oneshot::Sender<Reply>),
    R2tPolicy(R2tPolicy),
}

/// The caller's side; dropping it ends the driver (and closes the connection).
pub struct SharedConnection {
    orders: mpsc::UnboundedSender<Order>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for SharedConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl SharedConnection {
    /// Connects and logs in (see `Connection::connect`), then hands the connection to a driver
    /// task on the current runtime.
    pub async fn connect(
        url: &IscsiUrl,
        opts: &LoginOptions,
    ) -> Result<(SharedConnection, crate::SessionParams), Error> {
        let conn = Connection::connect(url, opts).await?;
        let params = conn.params().clone();
        let (orders, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(conn, rx));
        Ok((SharedConnection { orders, driver }, params))
    }

    /// Sends a command and waits up to `wait` for its status: `None` when none came (the task
    /// was aborted, or the connection ended).
    pub async fn command(&self, cdb: &[u8], write_data: Bytes, read_len: u32, wait: Duration) -> Option<Reply> {
        if cdb.len() > 16 {
            return None;
        }
        let mut full = [0u8; 16];
        full[..cdb.len()].copy_from_slice(cdb);
        let request = Request { cdb: full, write_data, read_len, collect: read_len > 0, tag: 0 };
        let (tx, rx) = oneshot::channel();
        self.orders.send(Order::Command(request, tx)).ok()?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// How later R2Ts are answered (see `R2tPolicy`).
    pub fn set_r2t_policy(&self, policy: R2tPolicy) {
        let _ = self.orders.send(Order::R2tPolicy(policy));
    }
}

/// Owns the connection: submits commands as the CmdSN window allows, reads all the time
/// (NOP-In pings are answered even when idle), and hands each status to its caller.
async fn drive(mut conn: Connection, mut orders: mpsc::UnboundedReceiver<Order>) {
    let mut waiting: VecDeque<(Request, oneshot::Sender<Reply>)> = VecDeque::new();
    let mut callers: HashMap<u64, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_tag = 0u64;
    let mut done: Vec<Completion> = Vec::new();
    loop {
        while conn.can_submit() {
            let Some((mut request, caller)) = waiting.pop_front() else { break };
            next_tag += 1;
            request.tag = next_tag;
            if conn.submit(request).is_err() {
                return;
            }
            callers.insert(next_tag, caller);
        }
        tokio::select! {
            order = orders.recv() => match order {
                Some(Order::Command(request, caller)) => waiting.push_back((request, caller)),
                Some(Order::R2tPolicy(policy)) => conn.set_r2t_policy(policy),
                None => return,
            },
            served = conn.serve(&mut done) => {
                if served.is_err() {
                    return; // callers see their senders dropped: no status
                }
                for c in done.drain(..) {
                    if let Some(caller) = callers.remove(&c.tag) {
                        let _ = caller.send(Reply { status: c.status, sense: c.sense, data: c.data });
                    }
                }
            }
        }
    }
}
