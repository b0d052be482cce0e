//! The reservation sequence run through two target ports — two portal groups of one server, or
//! two gateways of a cluster — written down as a transcript of everything an initiator observes,
//! so that the two runs can be compared line by line. Registrants: A through port 1 only, B
//! through port 2, C through every port (ALL_TG_PT); A' is A's initiator port seen through
//! port 2 (another I_T nexus, SPC-4 §5.13.2), D never registers. Observers on both ports read
//! the state and assert that both ports report the same.

use super::{initiator_port_transport_id, prout, register_and_move_param, Client, Reply};
use super::{CHECK_CONDITION, GOOD, RESERVATION_CONFLICT};
use bytes::Bytes;
use std::time::Duration;

pub const HOST_A: &str = "iqn.2026-11.test:seq-a";
pub const HOST_B: &str = "iqn.2026-11.test:seq-b";
pub const HOST_C: &str = "iqn.2026-11.test:seq-c";
pub const HOST_D: &str = "iqn.2026-11.test:seq-d";
pub const OBSERVER: &str = "iqn.2026-11.test:seq-observer";
const KEY_A: u64 = 0xA;
const KEY_B: u64 = 0xB;
const KEY_C: u64 = 0xC;

pub fn isid(n: u8) -> [u8; 6] {
    [0x80, 0x00, 0x00, 0x01, 0x00, n]
}

/// The two target ports: their portals and relative target port identifiers.
pub struct Ports<'a> {
    pub portal: [&'a str; 2],
    pub relative: [u16; 2],
    pub target: &'a str,
}

struct Nexuses {
    a: Client,
    a2: Client,
    b: Client,
    c: Client,
    c2: Client,
    d: Client,
    observers: [Client; 2],
}

async fn connect(ports: &Ports<'_>, port: usize, name: &str, n: u8) -> Client {
    let c = Client::login(ports.portal[port], name, isid(n), ports.target).await.expect("login");
    c.clear_unit_attentions().await;
    c
}

/// One line per observable: status and sense of a command.
pub fn outcome(r: &Reply) -> String {
    match (r.status, r.sense_code()) {
        (GOOD, _) => "GOOD".into(),
        (RESERVATION_CONFLICT, _) => "RESERVATION CONFLICT".into(),
        (CHECK_CONDITION, Some((k, asc, ascq))) => format!("CHECK CONDITION {k:02x}/{asc:02x}/{ascq:02x}"),
        (status, _) => format!("status {status:#04x}"),
    }
}

struct Transcript<'a> {
    lines: Vec<String>,
    ports: &'a Ports<'a>,
}

impl Transcript<'_> {
    fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Port 1 or 2 of this run (the relative target port identifiers differ between runs).
    fn port_label(&self, relative: u16) -> String {
        match self.ports.relative.iter().position(|&p| p == relative) {
            Some(i) => format!("port{}", i + 1),
            None => format!("unknown port {relative:#06x}"),
        }
    }

    /// READ KEYS, READ RESERVATION and READ FULL STATUS through both ports: the two must agree
    /// (one state, one PRgeneration), and the agreed state goes into the transcript.
    async fn observe(&mut self, step: &str, n: &Nexuses) {
        let mut views = Vec::new();
        for o in &n.observers {
            let (gen, mut keys) = o.read_keys().await;
            keys.sort();
            let reservation = o.read_reservation().await;
            let (full_gen, full) = o.read_full_status().await;
            assert_eq!(gen, full_gen, "{step}: READ KEYS and READ FULL STATUS disagree on PRgeneration");
            let mut nexuses: Vec<String> = full
                .iter()
                .map(|d| {
                    // SPC-4 §6.15.5: with ALL_TG_PT set the relative port says nothing.
                    let port = if d.all_tg_pt { "all ports".into() } else { self.port_label(d.relative_port) };
                    let holder = if d.holder { " holder" } else { "" };
                    format!("{:#x} {} via {port} type {:#04x}{holder}", d.key, d.transport_id, d.scope_type)
                })
                .collect();
            nexuses.sort();
            views.push(format!("gen={gen} keys={keys:x?} reservation={reservation:x?} nexuses={nexuses:?}"));
        }
        assert_eq!(views[0], views[1], "{step}: the two ports report different states");
        self.note(format!("{step}: {}", views[0]));
    }

    /// The unit attentions pending for each nexus (consumed).
    async fn unit_attentions(&mut self, step: &str, n: &Nexuses) {
        let named = [("A", &n.a), ("A'", &n.a2), ("B", &n.b), ("C", &n.c), ("C'", &n.c2), ("D", &n.d)];
        for (name, c) in named {
            let seen = c.clear_unit_attentions().await;
            self.note(format!("{step}: unit attentions of {name}: {seen:02x?}"));
        }
    }

    async fn io(&mut self, step: &str, name: &str, c: &Client, lba: u64) -> (String, String) {
        let wait = Duration::from_secs(10);
        let read = outcome(&c.read16(lba, 1).await);
        let write = c.write16(lba, Bytes::from(vec![lba as u8; 512]), wait).await.expect("WRITE answered");
        let write = outcome(&write);
        self.note(format!("{step}: {name} read {read}, write {write}"));
        (read, write)
    }
}

/// Runs the sequence; returns the transcript. Panics where an outcome SPC-4 fixes is wrong.
pub async fn run(ports: &Ports<'_>) -> Vec<String> {
    let n = Nexuses {
        a: connect(ports, 0, HOST_A, 1).await,
        a2: connect(ports, 1, HOST_A, 1).await,
        b: connect(ports, 1, HOST_B, 1).await,
        c: connect(ports, 0, HOST_C, 1).await,
        c2: connect(ports, 1, HOST_C, 1).await,
        d: connect(ports, 1, HOST_D, 1).await,
        observers: [connect(ports, 0, OBSERVER, 1).await, connect(ports, 1, OBSERVER, 2).await],
    };
    let mut t = Transcript { lines: Vec::new(), ports };
    t.observe("start", &n).await;

    // Registration is per I_T nexus (SPC-4 §5.13.7); ALL_TG_PT registers every target port.
    let r = n.a.pr_out(prout::REGISTER, 0, 0, KEY_A, 0).await;
    assert_eq!(r.status, GOOD, "A registers through port 1");
    let r = n.b.pr_out(prout::REGISTER, 0, 0, KEY_B, 0).await;
    assert_eq!(r.status, GOOD, "B registers through port 2");
    let r = n.c.pr_out(prout::REGISTER, 0, 0, KEY_C, prout::ALL_TG_PT).await;
    assert_eq!(r.status, GOOD, "C registers with ALL_TG_PT through port 1");
    t.observe("registered", &n).await;
    // A registered nexus may re-register its own key; an unregistered one with a non-zero key
    // gets RESERVATION CONFLICT (SPC-4 §5.13.7 Table 54).
    let a2 = n.a2.pr_out(prout::REGISTER, 0, KEY_A, KEY_A, 0).await;
    assert_eq!(a2.status, RESERVATION_CONFLICT, "A's registration through port 1 is not one through port 2");
    let c2 = n.c2.pr_out(prout::REGISTER, 0, KEY_C, KEY_C, 0).await;
    assert_eq!(c2.status, GOOD, "C's ALL_TG_PT registration covers port 2");
    t.note(format!("probe registrations: A' {}, C' {}", outcome(&a2), outcome(&c2)));
    t.observe("probed", &n).await;

    // Each reservation type held by A through port 1, tried through both ports (SPC-4 §5.13.1
    // Table 53).
    for (kind, lba) in
        [(prout::WE, 8), (prout::EA, 16), (prout::WERO, 24), (prout::EARO, 32), (prout::WEAR, 40), (prout::EAAR, 48)]
    {
        let step = format!("type {kind}");
        assert_eq!(n.a.pr_out(prout::RESERVE, kind, KEY_A, 0, 0).await.status, GOOD, "{step}: RESERVE");
        t.observe(&step, &n).await;
        let holder = t.io(&step, "A (holder)", &n.a, lba).await;
        let (_, b_write) = t.io(&step, "B (registered)", &n.b, lba + 1).await;
        let (d_read, d_write) = t.io(&step, "D (not registered)", &n.d, lba + 2).await;
        let (a2_read, a2_write) = t.io(&step, "A' (not registered)", &n.a2, lba + 3).await;
        t.io(&step, "C (all ports)", &n.c, lba + 4).await;
        t.io(&step, "C' (all ports)", &n.c2, lba + 5).await;
        assert_eq!(holder, ("GOOD".into(), "GOOD".into()), "{step}: the holder reads and writes");
        assert_eq!(d_write, "RESERVATION CONFLICT", "{step}: an unregistered nexus never writes");
        assert_eq!((&a2_read, &a2_write), (&d_read, &d_write), "{step}: A' is as unregistered as D");
        let exclusive_access = [prout::EA, prout::EARO, prout::EAAR].contains(&kind);
        assert_eq!(d_read == "RESERVATION CONFLICT", exclusive_access, "{step}: reads of an unregistered nexus");
        let registrants_write = [prout::WERO, prout::EARO, prout::WEAR, prout::EAAR].contains(&kind);
        assert_eq!(b_write == "GOOD", registrants_write, "{step}: writes of a registrant on the other port");
        let r = n.a.pr_out(prout::RELEASE, kind, KEY_A, 0, 0).await;
        assert_eq!(r.status, GOOD, "{step}: RELEASE");
        // SPC-4 §5.13.11.2.2: releasing a registrants-only or all-registrants reservation tells
        // every other registrant (RESERVATIONS RELEASED), whichever port it uses.
        t.unit_attentions(&format!("{step} released"), &n).await;
        t.observe(&format!("{step} released"), &n).await;
    }

    // PREEMPT (SPC-4 §5.13.11.2.4): B through port 2 takes A's reservation and registration.
    assert_eq!(n.a.pr_out(prout::RESERVE, prout::WERO, KEY_A, 0, 0).await.status, GOOD);
    let r = n.b.pr_out(prout::PREEMPT, prout::WERO, KEY_B, KEY_A, 0).await;
    assert_eq!(r.status, GOOD, "PREEMPT");
    let a_seen = n.a.clear_unit_attentions().await;
    assert!(a_seen.contains(&(0x2A, 0x05)), "A got REGISTRATIONS PREEMPTED through port 1: {a_seen:02x?}");
    t.note(format!("preempt: unit attentions of A: {a_seen:02x?}"));
    t.unit_attentions("preempt", &n).await;
    t.observe("preempt", &n).await;
    t.io("preempted", "A", &n.a, 60).await;

    // PREEMPT AND ABORT of A's new registration.
    assert_eq!(n.a.pr_out(prout::REGISTER, 0, 0, KEY_A, 0).await.status, GOOD);
    let r = n.b.pr_out(prout::PREEMPT_AND_ABORT, prout::WERO, KEY_B, KEY_A, 0).await;
    assert_eq!(r.status, GOOD, "PREEMPT AND ABORT");
    t.unit_attentions("preempt and abort", &n).await;
    t.observe("preempt and abort", &n).await;
    let (_, a_write) = t.io("preempted and aborted", "A", &n.a, 61).await;
    assert_eq!(a_write, "RESERVATION CONFLICT", "A is fenced through port 1");

    // REGISTER AND MOVE (SPC-4 §5.13.8). To a nexus on the other port: this server knows only
    // the receiving target port (src/pr/apply.rs), whichever it is, so both runs refuse it alike.
    let to_a =
        register_and_move_param(KEY_B, 0xAA, false, ports.relative[0], &initiator_port_transport_id(HOST_A, isid(1)));
    let r = n.b.pr_out_raw(prout::REGISTER_AND_MOVE, prout::WERO, to_a).await;
    t.note(format!("register and move to port 1: {}", outcome(&r)));
    // To D on B's own port: D is registered with the new key and holds the reservation.
    let to_d =
        register_and_move_param(KEY_B, 0xDD, false, ports.relative[1], &initiator_port_transport_id(HOST_D, isid(1)));
    let r = n.b.pr_out_raw(prout::REGISTER_AND_MOVE, prout::WERO, to_d).await;
    assert_eq!(r.status, GOOD, "REGISTER AND MOVE: {r:?}");
    assert_eq!(n.observers[0].read_reservation().await, Some((0xDD, prout::WERO)), "D holds it, seen through port 1");
    t.unit_attentions("moved", &n).await;
    t.observe("moved", &n).await;
    let (_, d_write) = t.io("moved", "D", &n.d, 62).await;
    assert_eq!(d_write, "GOOD", "the new holder writes");
    let (_, a_write) = t.io("moved", "A", &n.a, 63).await;
    assert_eq!(a_write, "RESERVATION CONFLICT", "the preempted A still cannot");
    assert_eq!(n.d.pr_out(prout::RELEASE, prout::WERO, 0xDD, 0, 0).await.status, GOOD);
    t.unit_attentions("released by D", &n).await;
    t.observe("released by D", &n).await;

    // CLEAR (SPC-4 §5.13.11.2.6) through port 2: everything goes; every other registrant
    // learns it, A through port 1 too.
    assert_eq!(n.a.pr_out(prout::REGISTER, 0, 0, KEY_A, 0).await.status, GOOD);
    assert_eq!(n.a.pr_out(prout::RESERVE, prout::EARO, KEY_A, 0, 0).await.status, GOOD);
    let r = n.c2.pr_out(prout::CLEAR, 0, KEY_C, 0, 0).await;
    assert_eq!(r.status, GOOD, "CLEAR through port 2");
    let a_seen = n.a.clear_unit_attentions().await;
    assert!(a_seen.contains(&(0x2A, 0x03)), "A got RESERVATIONS PREEMPTED: {a_seen:02x?}");
    t.note(format!("cleared: unit attentions of A: {a_seen:02x?}"));
    t.unit_attentions("cleared", &n).await;
    t.observe("cleared", &n).await;
    t.lines
}
