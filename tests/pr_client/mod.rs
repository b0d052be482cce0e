//! A minimal iSCSI initiator for the reservation tests: the login of `palisade bench`, SCSI
//! commands with R2T-solicited write data (optionally delayed, to leave writes waiting for
//! Data-Out), many commands in flight, PR IN/OUT helpers. Built on the project's PDU codec.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use palisade::bench::login::{self, LoginOptions};
use palisade::bench::url::IscsiUrl;
use pdu::msg::{DataOut, NopOut, ScsiCommand, TargetPdu};
use pdu::{Digests, Framer, OutPdu};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;
pub const RESERVATION_CONFLICT: u8 = 0x18;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u8,
    pub sense: Option<Bytes>,
    pub data: Vec<u8>,
}

impl Reply {
    /// (sense key, ASC, ASCQ) of fixed-format sense.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        let s = self.sense.as_ref()?;
        (s.len() >= 14).then(|| (s[2] & 0x0F, s[12], s[13]))
    }
}

struct Pending {
    tx: Option<oneshot::Sender<Reply>>,
    write: Bytes,
    data: Vec<u8>,
}

struct Inner {
    wr: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Mutex<HashMap<u32, Pending>>,
    itt: AtomicU32,
    cmd_sn: AtomicU32,
    exp_stat_sn: AtomicU32,
    max_data_out: u32,
    /// Upper bound of a random delay before answering each R2T.
    r2t_delay: Mutex<Duration>,
    /// R2Ts are not answered at all: writes stay waiting for Data-Out.
    hold_r2ts: std::sync::atomic::AtomicBool,
}

pub struct Client {
    inner: Arc<Inner>,
    reader: tokio::task::JoinHandle<()>,
    pub initiator: String,
    pub isid: [u8; 6],
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn send(inner: &Inner, pdu: OutPdu) -> std::io::Result<()> {
    inner.wr.lock().await.write_all(&pdu.to_bytes(Digests::default())).await
}

impl Client {
    /// Logs in to `target` as `initiator` with `isid` (leading login, Normal session), with
    /// the login of `palisade bench` offering ImmediateData=No and InitialR2T=Yes, so every
    /// write waits for an R2T (which `set_r2t_delay` can hold back).
    pub async fn login(addr: &str, initiator: &str, isid: [u8; 6], target: &str) -> std::io::Result<Client> {
        let url = IscsiUrl::parse(&format!("iscsi://{addr}/{target}/0")).map_err(std::io::Error::other)?;
        let mut opts = LoginOptions::new(initiator, 0);
        opts.isid = isid;
        opts.immediate_data = false;
        opts.initial_r2t = true;
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let done =
            login::login(&mut stream, &url, &opts, None).await.map_err(|e| std::io::Error::other(e.to_string()))?;
        assert!(
            !done.params.immediate_data && done.params.initial_r2t,
            "writes must be R2T-solicited: {:?}",
            done.params
        );
        let framer = Framer { digests: Digests::default(), max_data_segment: opts.max_recv_data_segment_length };
        let (rd, wr) = stream.into_split();
        let inner = Arc::new(Inner {
            wr: tokio::sync::Mutex::new(wr),
            pending: Mutex::new(HashMap::new()),
            itt: AtomicU32::new(1),
            cmd_sn: AtomicU32::new(done.cmd_sn),
            exp_stat_sn: AtomicU32::new(done.exp_stat_sn),
            max_data_out: done.params.target_max_recv_data_segment_length.min(65536),
            r2t_delay: Mutex::new(Duration::ZERO),
            hold_r2ts: std::sync::atomic::AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_loop(inner.clone(), rd, BytesMut::new(), framer));
        Ok(Client { inner, reader, initiator: initiator.to_string(), isid })
    }

    /// Answers every later R2T only after a random delay of up to `max`.
    pub fn set_r2t_delay(&self, max: Duration) {
        *self.inner.r2t_delay.lock().unwrap() = max;
    }

    /// Leaves every later R2T unanswered, so writes wait for Data-Out until they are aborted.
    pub fn hold_r2ts(&self) {
        self.inner.hold_r2ts.store(true, Ordering::Relaxed);
    }

    /// Sends a command and waits for its status (None when no answer came within `wait`,
    /// e.g. because the task was aborted).
    pub async fn command(&self, cdb: &[u8], write: Bytes, read_len: u32, wait: Duration) -> Option<Reply> {
        let inner = &self.inner;
        let itt = inner.itt.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let write_len = write.len() as u32;
        inner.pending.lock().unwrap().insert(itt, Pending { tx: Some(tx), write, data: Vec::new() });
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: read_len > 0,
            write: write_len > 0,
            attr: 1,
            lun: 0,
            itt,
            expected_data_transfer_length: read_len.max(write_len),
            cmd_sn: inner.cmd_sn.fetch_add(1, Ordering::Relaxed),
            exp_stat_sn: inner.exp_stat_sn.load(Ordering::Relaxed),
            cdb: c,
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: Bytes::new(),
        };
        send(inner, cmd.encode()).await.ok()?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => Some(reply),
            _ => {
                inner.pending.lock().unwrap().remove(&itt);
                None
            }
        }
    }

    /// TEST UNIT READY until it passes: consumes pending unit attentions (as fence_scsi does).
    /// Returns the (ASC, ASCQ) of every unit attention seen.
    pub async fn clear_unit_attentions(&self) -> Vec<(u8, u8)> {
        let mut seen = Vec::new();
        for _ in 0..16 {
            let r = self.command(&[0; 6], Bytes::new(), 0, Duration::from_secs(10)).await.expect("TUR answered");
            match r.sense_code() {
                Some((6, asc, ascq)) => seen.push((asc, ascq)),
                _ => return seen,
            }
        }
        seen
    }

    pub async fn pr_out(&self, action: u8, kind: u8, key: u64, sa_key: u64, flags: u8) -> Reply {
        let mut param = vec![0u8; 24];
        param[0..8].copy_from_slice(&key.to_be_bytes());
        param[8..16].copy_from_slice(&sa_key.to_be_bytes());
        param[20] = flags;
        self.pr_out_raw(action, kind, param).await
    }

    /// PR OUT; a unit attention in the way is consumed and the command repeated.
    pub async fn pr_out_raw(&self, action: u8, kind: u8, param: Vec<u8>) -> Reply {
        let len = param.len() as u32;
        let mut cdb = [0x5F, action, kind, 0, 0, 0, 0, 0, 0, 0];
        cdb[5..9].copy_from_slice(&len.to_be_bytes());
        let param = Bytes::from(param);
        self.retry_unit_attention(&cdb, param, 0).await
    }

    /// PR IN; a unit attention in the way is consumed and the command repeated.
    pub async fn pr_in(&self, action: u8) -> Reply {
        self.retry_unit_attention(&[0x5E, action, 0, 0, 0, 0, 0, 0x20, 0x00, 0], Bytes::new(), 0x2000).await
    }

    async fn retry_unit_attention(&self, cdb: &[u8], write: Bytes, read_len: u32) -> Reply {
        for _ in 0..8 {
            let r = self.command(cdb, write.clone(), read_len, Duration::from_secs(20)).await.expect("answered");
            if r.sense_code().is_none_or(|(key, _, _)| key != 6) {
                return r;
            }
        }
        panic!("unit attentions never ended");
    }

    /// READ KEYS: (PRgeneration, keys).
    pub async fn read_keys(&self) -> (u32, Vec<u64>) {
        let r = self.pr_in(0).await;
        assert_eq!(r.status, GOOD, "READ KEYS: {r:?}");
        let gen = u32::from_be_bytes(r.data[0..4].try_into().unwrap());
        let n = u32::from_be_bytes(r.data[4..8].try_into().unwrap()) as usize / 8;
        (gen, (0..n).map(|i| u64::from_be_bytes(r.data[8 + 8 * i..16 + 8 * i].try_into().unwrap())).collect())
    }

    /// READ RESERVATION: Some((key, type)).
    pub async fn read_reservation(&self) -> Option<(u64, u8)> {
        let r = self.pr_in(1).await;
        assert_eq!(r.status, GOOD, "READ RESERVATION: {r:?}");
        (r.data.len() >= 24).then(|| (u64::from_be_bytes(r.data[8..16].try_into().unwrap()), r.data[21] & 0x0F))
    }

    pub async fn write16(&self, lba: u64, data: Bytes, wait: Duration) -> Option<Reply> {
        let blocks = (data.len() / 512) as u32;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8A;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.command(&cdb, data, 0, wait).await
    }

    pub async fn read16(&self, lba: u64, blocks: u32) -> Reply {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.command(&cdb, Bytes::new(), blocks * 512, Duration::from_secs(20)).await.expect("READ answered")
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

async fn read_loop(inner: Arc<Inner>, mut rd: tokio::net::tcp::OwnedReadHalf, mut buf: BytesMut, framer: Framer) {
    loop {
        let pdu = match framer.decode(&mut buf) {
            Ok(Some(p)) => p,
            Ok(None) => match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(_) => return,
        };
        let Ok(msg) = TargetPdu::decode(&pdu) else { continue };
        let finish = |itt: u32, status: u8, sense: Option<Bytes>| {
            if let Some(mut p) = inner.pending.lock().unwrap().remove(&itt) {
                if let Some(tx) = p.tx.take() {
                    let _ = tx.send(Reply { status, sense, data: std::mem::take(&mut p.data) });
                }
            }
        };
        match msg {
            TargetPdu::DataIn(d) => {
                if let Some(p) = inner.pending.lock().unwrap().get_mut(&d.itt) {
                    p.data.extend_from_slice(&d.data);
                }
                if let Some(status) = d.status {
                    inner.exp_stat_sn.store(d.seq.stat_sn.wrapping_add(1), Ordering::Relaxed);
                    finish(d.itt, status, None);
                }
            }
            TargetPdu::ScsiResponse(r) => {
                inner.exp_stat_sn.store(r.seq.stat_sn.wrapping_add(1), Ordering::Relaxed);
                finish(r.itt, r.status, r.sense());
            }
            TargetPdu::R2t(r2t) => {
                let data = inner.pending.lock().unwrap().get(&r2t.itt).map(|p| p.write.clone());
                let Some(data) = data else { continue };
                if inner.hold_r2ts.load(Ordering::Relaxed) {
                    continue;
                }
                let delay = *inner.r2t_delay.lock().unwrap();
                let inner = inner.clone();
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        let ms = rand::random::<u64>() % (delay.as_millis() as u64 + 1);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let (start, end) =
                        (r2t.buffer_offset as usize, (r2t.buffer_offset + r2t.desired_data_transfer_length) as usize);
                    let mut at = start;
                    let mut data_sn = 0;
                    while at < end.min(data.len()) {
                        let n = (end - at).min(inner.max_data_out as usize);
                        let out = DataOut {
                            final_bit: at + n >= end,
                            lun: r2t.lun,
                            itt: r2t.itt,
                            ttt: r2t.ttt,
                            exp_stat_sn: inner.exp_stat_sn.load(Ordering::Relaxed),
                            data_sn,
                            buffer_offset: at as u32,
                            data: data.slice(at..at + n),
                        };
                        if send(&inner, out.encode()).await.is_err() {
                            return;
                        }
                        at += n;
                        data_sn += 1;
                    }
                });
            }
            TargetPdu::NopIn(nop) if nop.ttt != 0xFFFF_FFFF => {
                let out = NopOut {
                    immediate: true,
                    lun: 0,
                    itt: 0xFFFF_FFFF,
                    ttt: nop.ttt,
                    cmd_sn: inner.cmd_sn.load(Ordering::Relaxed),
                    exp_stat_sn: inner.exp_stat_sn.load(Ordering::Relaxed),
                    data: Bytes::new(),
                };
                let _ = send(&inner, out.encode()).await;
            }
            _ => {}
        }
    }
}
