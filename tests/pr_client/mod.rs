//! The reservation tests' client: `palisade-initiator`'s shared connection (many commands in
//! flight from many tasks, R2T hooks to leave writes waiting for Data-Out), logged in with
//! ImmediateData=No and InitialR2T=Yes so every write is R2T-solicited, plus PR IN/OUT helpers.
#![allow(dead_code)]

use bytes::Bytes;
use initiator::cdb;
use initiator::connection::R2tPolicy;
use initiator::shared::SharedConnection;
use initiator::{IscsiUrl, LoginOptions};
use pdu::be;
use std::time::Duration;

pub use initiator::cdb::{CHECK_CONDITION, GOOD, RESERVATION_CONFLICT};
pub use initiator::shared::Reply;

pub struct Client {
    conn: SharedConnection,
    pub initiator: String,
    pub isid: [u8; 6],
}

impl Client {
    /// Logs in to `target` as `initiator` with `isid` (leading login, Normal session), offering
    /// ImmediateData=No and InitialR2T=Yes, so every write waits for an R2T (which
    /// `set_r2t_delay` can hold back).
    pub async fn login(addr: &str, initiator: &str, isid: [u8; 6], target: &str) -> std::io::Result<Client> {
        let url = IscsiUrl::parse(&format!("iscsi://{addr}/{target}/0")).map_err(std::io::Error::other)?;
        let mut opts = LoginOptions::new(initiator, 0);
        opts.isid = isid;
        opts.immediate_data = false;
        opts.initial_r2t = true;
        let (conn, params) = SharedConnection::connect(&url, &opts).await.map_err(std::io::Error::other)?;
        assert!(!params.immediate_data && params.initial_r2t, "writes must be R2T-solicited: {params:?}");
        Ok(Client { conn, initiator: initiator.to_string(), isid })
    }

    /// Answers every later R2T only after a random delay of up to `max`.
    pub fn set_r2t_delay(&self, max: Duration) {
        self.conn.set_r2t_policy(R2tPolicy::Delay(max));
    }

    /// Leaves every later R2T unanswered, so writes wait for Data-Out until they are aborted.
    pub fn hold_r2ts(&self) {
        self.conn.set_r2t_policy(R2tPolicy::Hold);
    }

    /// Sends a command and waits for its status (None when no answer came within `wait`,
    /// e.g. because the task was aborted).
    pub async fn command(&self, cdb: &[u8], write: Bytes, read_len: u32, wait: Duration) -> Option<Reply> {
        self.conn.command(cdb, write, read_len, wait).await
    }

    /// TEST UNIT READY until it passes: consumes pending unit attentions (as fence_scsi does).
    /// Returns the (ASC, ASCQ) of every unit attention seen.
    pub async fn clear_unit_attentions(&self) -> Vec<(u8, u8)> {
        let mut seen = Vec::new();
        for _ in 0..16 {
            let r = self.command(&[0; 6], Bytes::new(), 0, Duration::from_secs(10)).await.expect("TUR answered");
            match r.sense_code() {
                Some((cdb::UNIT_ATTENTION, asc, ascq)) => seen.push((asc, ascq)),
                _ => return seen,
            }
        }
        seen
    }

    pub async fn pr_out(&self, action: u8, kind: u8, key: u64, sa_key: u64, flags: u8) -> Reply {
        self.pr_out_raw(action, kind, cdb::pr_out_param(key, sa_key, flags)).await
    }

    /// PR OUT; a unit attention in the way is consumed and the command repeated.
    pub async fn pr_out_raw(&self, action: u8, kind: u8, param: Vec<u8>) -> Reply {
        let cdb = cdb::pr_out(action, kind, param.len() as u32);
        self.retry_unit_attention(&cdb[..10], Bytes::from(param), 0).await
    }

    /// PR IN; a unit attention in the way is consumed and the command repeated.
    pub async fn pr_in(&self, action: u8) -> Reply {
        self.retry_unit_attention(&cdb::pr_in(action, 0x2000)[..10], Bytes::new(), 0x2000).await
    }

    async fn retry_unit_attention(&self, cdb: &[u8], write: Bytes, read_len: u32) -> Reply {
        for _ in 0..8 {
            let r = self.command(cdb, write.clone(), read_len, Duration::from_secs(20)).await.expect("answered");
            if r.sense_code().is_none_or(|(key, _, _)| key != cdb::UNIT_ATTENTION) {
                return r;
            }
        }
        panic!("unit attentions never ended");
    }

    /// READ KEYS (SPC-4 §6.15.2): (PRgeneration, keys).
    pub async fn read_keys(&self) -> (u32, Vec<u64>) {
        let r = self.pr_in(0).await;
        assert_eq!(r.status, GOOD, "READ KEYS: {r:?}");
        let gen = be::u32_at(&r.data, 0).expect("PRgeneration");
        let n = be::u32_at(&r.data, 4).expect("ADDITIONAL LENGTH") as usize / 8;
        (gen, (0..n).map(|i| be::u64_at(&r.data, 8 + 8 * i).expect("a whole key")).collect())
    }

    /// READ RESERVATION (SPC-4 §6.15.3): Some((key, type)).
    pub async fn read_reservation(&self) -> Option<(u64, u8)> {
        let r = self.pr_in(1).await;
        assert_eq!(r.status, GOOD, "READ RESERVATION: {r:?}");
        (r.data.len() >= 24).then(|| (be::u64_at(&r.data, 8).expect("key"), r.data[21] & 0x0F))
    }

    pub async fn write16(&self, lba: u64, data: Bytes, wait: Duration) -> Option<Reply> {
        let blocks = (data.len() / 512) as u32;
        self.command(&cdb::rw16(true, false, lba, blocks), data, 0, wait).await
    }

    pub async fn read16(&self, lba: u64, blocks: u32) -> Reply {
        self.command(&cdb::rw16(false, false, lba, blocks), Bytes::new(), blocks * 512, Duration::from_secs(20))
            .await
            .expect("READ answered")
    }
}

/// PR OUT service actions and types used by the tests (SPC-4 §6.16).
pub mod prout {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE: u8 = 6;
    pub const WERO: u8 = 5;
    pub const WEAR: u8 = 7;
    pub const APTPL: u8 = 0x01;
}
