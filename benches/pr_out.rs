//! PERSISTENT RESERVE OUT cost with thousands of registrants (issue #15): REGISTER, RESERVE,
//! PREEMPT AND ABORT and CLEAR applied through a logical unit's fencing gate (`pr::Unit`) on a
//! state of 4,096 registrations, without APTPL (memory only) and with APTPL (the record is
//! written and fsync'ed to a file in the temp folder before the command would complete).
//! Reports p50/p99 per command and the bytes written per change (journal entry, or snapshot
//! when the change compacts the journal). In process: the iSCSI round trip (tens of
//! microseconds on loopback) comes on top.
//!
//! `cargo bench --bench pr_out` (PR_OUT_REGISTRANTS and PR_OUT_ROUNDS override 4096 and 200).

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::pr::{
    conflicts, FileStore, ItNexus, PrClass, PrType, Registrant, RegistrantId, Request, State, Store, Unit,
};

const TARGET: &str = "iqn.2026-11.io.palisade:default";

fn env(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Host `i` of a cluster, one path: a realistic initiator name length (Windows-style FQDN).
fn host(i: usize) -> ItNexus {
    let name = format!("iqn.1991-05.com.microsoft:node-{i:04}.cluster.example.com");
    ItNexus::new(&name, [0x40, 0, 0x01, 0x37, (i >> 8) as u8, i as u8], TARGET, 1)
}

fn register(key: u64, new_key: u64, aptpl: bool) -> Request {
    Request::Register { key, new_key, ignore_existing: true, all_tg_pt: false, aptpl, spec: vec![] }
}

/// `count` registrations, host i with key i + 1, host 0 holding a `kind` reservation.
fn crowd(count: usize, kind: PrType, aptpl: bool) -> State {
    let registrants: Vec<Registrant> =
        (0..count).map(|i| Registrant { id: RegistrantId::of(&host(i), false), key: i as u64 + 1 }).collect();
    let holder = registrants[0].id.clone();
    State {
        generation: count as u32,
        registrants: registrants.into(),
        reservation: Some(palisade::pr::Reservation { holder, kind }),
        aptpl,
    }
}

struct Lab {
    dir: std::path::PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Lab {
    /// A unit holding `state`; with APTPL its record is written first, as a restart finds it.
    fn unit(&self, state: State, name: &str) -> (Unit, Option<Arc<FileStore>>) {
        if !state.aptpl {
            return (Unit::with_state(state, None), None);
        }
        let store = Arc::new(FileStore::new(self.dir.join(format!("{name}.pr"))));
        store.save(&State::default(), &state).expect("initial record");
        (Unit::with_state(state, Some(store.clone())), Some(store))
    }

    fn change(&self, unit: &Unit, nexus: &ItNexus, request: &Request) -> Duration {
        let start = Instant::now();
        self.runtime.block_on(unit.change(nexus, request, |_, _| {})).expect("PR OUT accepted");
        start.elapsed()
    }

    /// Times a change and, with a store, counts the bytes it wrote.
    fn measured(
        &self,
        unit: &Unit,
        store: &Option<Arc<FileStore>>,
        nexus: &ItNexus,
        request: &Request,
        m: &mut Measure,
    ) {
        let before = store.as_ref().map(|s| Files::of(s));
        m.latency.push(self.change(unit, nexus, request));
        if let (Some(store), Some(before)) = (store, before) {
            m.bytes.push(Files::of(store).written_since(&before));
        }
    }
}

/// The snapshot (its inode changes when it is rewritten) and the journal's length.
struct Files {
    snapshot_inode: u64,
    snapshot_len: u64,
    journal_len: u64,
}

impl Files {
    fn of(store: &FileStore) -> Files {
        let snapshot = std::fs::metadata(store.path()).expect("snapshot");
        let journal_len = std::fs::metadata(store.journal_path()).map_or(0, |m| m.len());
        Files { snapshot_inode: snapshot.ino(), snapshot_len: snapshot.len(), journal_len }
    }

    fn written_since(&self, before: &Files) -> u64 {
        if self.snapshot_inode != before.snapshot_inode {
            self.snapshot_len + self.journal_len // compacted: a new snapshot and journal header
        } else {
            self.journal_len - before.journal_len
        }
    }
}

#[derive(Default)]
struct Measure {
    latency: Vec<Duration>,
    bytes: Vec<u64>,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, aptpl: bool, m: &mut Measure) {
    let (p50, p99) = (percentile(&mut m.latency, 0.50), percentile(&mut m.latency, 0.99));
    m.bytes.sort();
    let bytes = match (m.bytes.get(m.bytes.len() / 2), m.bytes.last()) {
        (Some(median), Some(max)) => format!("{median} / {max}"),
        _ => "-".to_string(),
    };
    println!(
        "{what:<34} {:<6} {:>10.1} {:>10.1}   {bytes}",
        if aptpl { "on" } else { "off" },
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
    );
}

fn main() {
    let count = env("PR_OUT_REGISTRANTS", 4096);
    let rounds = env("PR_OUT_ROUNDS", 200);
    let dir = std::env::temp_dir().join(format!("palisade-pr-out-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lab = Lab { dir: dir.clone(), runtime: tokio::runtime::Builder::new_current_thread().build().unwrap() };
    println!("PR OUT through pr::Unit with {count} registrants, {rounds} rounds each (CLEAR: rounds / 10)");
    println!(
        "{:<34} {:<6} {:>10} {:>10}   bytes written per change (median / max)",
        "command", "APTPL", "p50 µs", "p99 µs"
    );
    for aptpl in [false, true] {
        // REGISTER of one more nexus (the 4,096th), and its unregistration.
        let (unit, store) = lab.unit(crowd(count - 1, PrType::WriteExclusiveAllRegistrants, aptpl), "register");
        let newcomer = host(count - 1);
        let (mut reg, mut unreg) = (Measure::default(), Measure::default());
        for _ in 0..rounds {
            lab.measured(&unit, &store, &newcomer, &register(0, 0xC0FFEE, aptpl), &mut reg);
            lab.measured(&unit, &store, &newcomer, &register(0xC0FFEE, 0, aptpl), &mut unreg);
        }
        report("REGISTER (new nexus)", aptpl, &mut reg);
        report("REGISTER (unregister)", aptpl, &mut unreg);

        // RESERVE (and RELEASE) Write Exclusive – All Registrants.
        let mut state = crowd(count, PrType::WriteExclusiveAllRegistrants, aptpl);
        state.reservation = None;
        let (unit, store) = lab.unit(state, "reserve");
        let (mut reserve, mut release) = (Measure::default(), Measure::default());
        let kind = PrType::WriteExclusiveAllRegistrants;
        for _ in 0..rounds {
            lab.measured(&unit, &store, &host(0), &Request::Reserve { key: 1, kind }, &mut reserve);
            lab.measured(&unit, &store, &host(0), &Request::Release { key: 1, kind }, &mut release);
        }
        report("RESERVE (type 7)", aptpl, &mut reserve);
        report("RELEASE (type 7: UA to all others)", aptpl, &mut release);

        // PREEMPT AND ABORT of one registrant by the WERO holder; the victim registers again
        // (not timed) for the next round.
        let (unit, store) = lab.unit(crowd(count, PrType::WriteExclusiveRegistrantsOnly, aptpl), "preempt");
        let mut preempt = Measure::default();
        let victim = host(count / 2);
        for round in 0..rounds as u64 {
            let key = 0xBAD0_0000 + round;
            lab.change(&unit, &victim, &register(0, key, aptpl));
            let req =
                Request::Preempt { key: 1, victim: key, kind: PrType::WriteExclusiveRegistrantsOnly, abort: true };
            lab.measured(&unit, &store, &host(0), &req, &mut preempt);
        }
        report("PREEMPT AND ABORT (one key)", aptpl, &mut preempt);

        // PREEMPT AND ABORT of the whole cluster (every other registrant shares one key), and
        // CLEAR; both rebuild the full state before each round (not timed).
        let (mut everyone, mut clear) = (Measure::default(), Measure::default());
        for _ in 0..(rounds / 10).max(5) {
            let mut state = crowd(count, PrType::WriteExclusiveRegistrantsOnly, aptpl);
            let others: Vec<RegistrantId> = state.registrants.iter().skip(1).map(|r| r.id.clone()).collect();
            for id in &others {
                state.registrants.set_key(id, 0xF00D);
            }
            let (unit, store) = lab.unit(state, "everyone");
            let req =
                Request::Preempt { key: 1, victim: 0xF00D, kind: PrType::WriteExclusiveRegistrantsOnly, abort: true };
            lab.measured(&unit, &store, &host(0), &req, &mut everyone);
            let (unit, store) = lab.unit(crowd(count, PrType::WriteExclusiveRegistrantsOnly, aptpl), "clear");
            lab.measured(&unit, &store, &host(7), &Request::Clear { key: 8 }, &mut clear);
        }
        report(&format!("PREEMPT AND ABORT ({} nexuses)", count - 1), aptpl, &mut everyone);
        report("CLEAR", aptpl, &mut clear);
    }
    durable_write(&dir, count, rounds);
    let _ = std::fs::remove_dir_all(&dir);
    reservation_check(count);
}

/// The durable write of one REGISTER under APTPL, alternating in the same run between the
/// journal (`FileStore`) and the whole-record rewrite every change cost before it (the record
/// to a temp file, fsync, rename, fsync of the directory).
fn durable_write(dir: &std::path::Path, count: usize, rounds: usize) {
    let before = crowd(count - 1, PrType::WriteExclusiveAllRegistrants, true);
    let mut after = before.clone();
    after.registrants.push(Registrant { id: RegistrantId::of(&host(count - 1), false), key: 0xC0FFEE });
    after.generation += 1;
    let journaled = FileStore::new(dir.join("journaled.pr"));
    journaled.save(&State::default(), &before).expect("initial record");
    let whole = dir.join("whole.pr");
    let (mut journal, mut rewrite) = (Vec::new(), Vec::new());
    let mut entry_bytes = 0;
    for _ in 0..rounds {
        let journal_len = std::fs::metadata(journaled.journal_path()).unwrap().len();
        let start = Instant::now();
        journaled.save(&before, &after).expect("journal entry");
        journal.push(start.elapsed());
        entry_bytes = std::fs::metadata(journaled.journal_path()).unwrap().len() - journal_len;
        journaled.save(&after, &before).expect("journal entry back");

        let start = Instant::now();
        let record = palisade::pr::record::encode(&after);
        let tmp = whole.with_extension("pr.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        std::io::Write::write_all(&mut f, &record).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &whole).unwrap();
        std::fs::File::open(dir).unwrap().sync_all().unwrap();
        rewrite.push(start.elapsed());
    }
    let us = |v: &mut Vec<Duration>, p| percentile(v, p).as_secs_f64() * 1e6;
    let record_bytes = std::fs::metadata(&whole).unwrap().len();
    println!(
        "durable write of one REGISTER with {count} registrants: journal p50 {:.0} µs p99 {:.0} µs ({entry_bytes} bytes); \
         whole-record rewrite p50 {:.0} µs p99 {:.0} µs ({record_bytes} bytes)",
        us(&mut journal, 0.5),
        us(&mut journal, 0.99),
        us(&mut rewrite, 0.5),
        us(&mut rewrite, 0.99)
    );
}

/// The check every command makes, `conflicts(state, nexus, Write)` for a registrant under a
/// type 7 reservation, with `count` and with 2 registrations: nanoseconds per check, in
/// alternating batches (the lookup is by index, so the two must match).
fn reservation_check(count: usize) {
    let (many, few) = (
        crowd(count, PrType::WriteExclusiveAllRegistrants, false),
        crowd(2, PrType::WriteExclusiveAllRegistrants, false),
    );
    let batch = |state: &State, who: &ItNexus| {
        let start = Instant::now();
        for _ in 0..200_000 {
            assert!(!conflicts(std::hint::black_box(state), std::hint::black_box(who), PrClass::Write));
        }
        start.elapsed().as_secs_f64() * 1e9 / 200_000.0
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        a.push(batch(&few, &host(1)));
        b.push(batch(&many, &host(count - 1)));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[a.len() / 2], b[b.len() / 2]);
    println!("reservation check (type 7, registered nexus): 2 registrants {ma:.1} ns, {count} registrants {mb:.1} ns, ratio {:.3}", mb / ma);
}
