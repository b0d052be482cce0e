//! The reservation tests' client: `palisade-initiator`'s shared connection (many commands in
//! flight from many tasks, R2T hooks to leave writes waiting for Data-Out), logged in with
//! ImmediateData=No and InitialR2T=Yes so every write is R2T-solicited, plus PR IN/OUT helpers.
#![allow(dead_code)]

pub mod sequence;

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

    /// Repeats the command past unit attentions, and — as a host does — past NOT READY,
    /// ASYMMETRIC ACCESS STATE TRANSITION (02/04/0A) or TARGET PORT IN UNAVAILABLE STATE
    /// (02/04/0C) for up to 10 s: a cluster gateway answers them while it is fenced or
    /// rejoining (its keepalives were late through an etcd election on a loaded machine).
    async fn retry_unit_attention(&self, cdb: &[u8], write: Bytes, read_len: u32) -> Reply {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        for _ in 0..8 {
            let mut r = self.command(cdb, write.clone(), read_len, Duration::from_secs(20)).await.expect("answered");
            let alua_not_ready = |r: &Reply| matches!(r.sense_code(), Some((0x02, 0x04, 0x0A | 0x0C)));
            while alua_not_ready(&r) && std::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(100)).await;
                r = self.command(cdb, write.clone(), read_len, Duration::from_secs(20)).await.expect("answered");
            }
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

    /// READ FULL STATUS (SPC-4 §6.15.5): (PRgeneration, one descriptor per registered I_T nexus).
    pub async fn read_full_status(&self) -> (u32, Vec<FullStatus>) {
        let r = self.pr_in(3).await;
        assert_eq!(r.status, GOOD, "READ FULL STATUS: {r:?}");
        let gen = be::u32_at(&r.data, 0).expect("PRgeneration");
        let end = 8 + be::u32_at(&r.data, 4).expect("ADDITIONAL LENGTH") as usize;
        let mut descriptors = Vec::new();
        let mut at = 8;
        while at + 24 <= end.min(r.data.len()) {
            let d = &r.data[at..];
            let tid_len = be::u32_at(d, 20).expect("ADDITIONAL DESCRIPTOR LENGTH") as usize;
            // The TransportID's iSCSI name string starts at its byte 4 and ends with a NUL.
            let tid = &d[24..24 + tid_len];
            let name = tid.get(4..).unwrap_or_default();
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            descriptors.push(FullStatus {
                key: be::u64_at(d, 0).expect("key"),
                all_tg_pt: d[12] & 0x02 != 0,
                holder: d[12] & 0x01 != 0,
                scope_type: d[13],
                relative_port: be::u16_at(d, 18).expect("RELATIVE TARGET PORT IDENTIFIER"),
                transport_id: String::from_utf8_lossy(name).into_owned(),
            });
            at += 24 + tid_len;
        }
        (gen, descriptors)
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

/// One descriptor of READ FULL STATUS (SPC-4 §6.15.5 Table 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullStatus {
    pub key: u64,
    pub all_tg_pt: bool,
    /// R_HOLDER: this nexus holds the reservation.
    pub holder: bool,
    pub scope_type: u8,
    pub relative_port: u16,
    /// The iSCSI name of the TransportID ("<name>,i,0x<ISID>" for an initiator port).
    pub transport_id: String,
}

/// An iSCSI initiator port TransportID (SPC-4 §7.6.4.6, format 01b): "<name>,i,0x<ISID>",
/// NUL-terminated, padded to a multiple of four bytes (at least 20).
pub fn initiator_port_transport_id(name: &str, isid: [u8; 6]) -> Vec<u8> {
    let isid_hex: String = isid.iter().map(|b| format!("{b:02x}")).collect();
    let mut body = format!("{name},i,0x{isid_hex}").into_bytes();
    body.push(0);
    while body.len() % 4 != 0 || body.len() < 20 {
        body.push(0);
    }
    let mut tid = vec![0x40 | 0x05, 0];
    tid.extend_from_slice(&(body.len() as u16).to_be_bytes());
    tid.extend_from_slice(&body);
    tid
}

/// The REGISTER AND MOVE parameter list (SPC-4 §6.16.4 Table 217): the holder's `key`, the
/// key `new_key` registered for the destination nexus `dest` (a TransportID) through
/// relative target port `relative_port`.
pub fn register_and_move_param(key: u64, new_key: u64, unreg: bool, relative_port: u16, dest: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    be::put_u64(&mut p, 0, key);
    be::put_u64(&mut p, 8, new_key);
    p[17] = (unreg as u8) << 1;
    be::put_u16(&mut p, 18, relative_port);
    be::put_u32(&mut p, 20, dest.len() as u32);
    p.extend_from_slice(dest);
    p
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
    pub const REGISTER_AND_MOVE: u8 = 7;
    pub const WE: u8 = 1;
    pub const EA: u8 = 3;
    pub const WERO: u8 = 5;
    pub const EARO: u8 = 6;
    pub const WEAR: u8 = 7;
    pub const EAAR: u8 = 8;
    pub const ALL_TG_PT: u8 = 0x04;
    pub const APTPL: u8 = 0x01;
}
