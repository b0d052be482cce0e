//! Login-key negotiation (palisade::iscsi::login): whole logins as libiscsi and open-iscsi send
//! them (fixtures/params/), through the pure login state machine.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade::iscsi::login::{
    ChapCredentials, LoginMachine, LoginPolicy, LoginProgress, LoginRequest, Stage, TargetAccess, TargetLimits,
};

const TARGET: &str = "iqn.2024-01.org.palisade:disk1";

struct OpenPolicy;

impl LoginPolicy for OpenPolicy {
    fn target(&self, target_name: &str, _initiator: &str) -> Option<TargetAccess> {
        (target_name == TARGET).then_some(TargetAccess {
            initiator_allowed: true,
            chap: None,
            mutual_chap: None,
            alias: None,
        })
    }

    fn discovery_auth(&self) -> Option<ChapCredentials> {
        None
    }
}

fn keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn request(csg: Stage, nsg: Stage, keys: Vec<(String, String)>) -> LoginRequest {
    LoginRequest {
        transit: true,
        cont: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 1, 2, 3, 4, 5],
        tsih: 0,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
        keys,
    }
}

fn login(c: &mut Criterion) {
    let policy: Arc<dyn LoginPolicy + Send + Sync> = Arc::new(OpenPolicy);
    let libiscsi_op = request(
        Stage::Operational,
        Stage::FullFeature,
        keys(include_str!("../fixtures/params/libiscsi_opneg_first.txt")),
    );
    c.bench_function("login: libiscsi, one operational exchange", |b| {
        b.iter(|| {
            let mut m = LoginMachine::new(TargetLimits::default(), policy.clone());
            let reply = m.step(black_box(&libiscsi_op));
            assert!(matches!(reply.outcome, LoginProgress::Complete(_)), "{reply:?}");
            black_box(reply)
        })
    });
    let open_sec = request(
        Stage::Security,
        Stage::Operational,
        keys(include_str!("../fixtures/params/open_iscsi_secneg_none.txt")),
    );
    let open_op = request(
        Stage::Operational,
        Stage::FullFeature,
        keys(include_str!("../fixtures/params/open_iscsi_opneg_normal.txt")),
    );
    c.bench_function("login: open-iscsi, security + operational", |b| {
        b.iter(|| {
            let mut m = LoginMachine::new(TargetLimits::default(), policy.clone());
            let first = m.step(black_box(&open_sec));
            assert!(matches!(first.outcome, LoginProgress::Continue), "{first:?}");
            let reply = m.step(black_box(&open_op));
            assert!(matches!(reply.outcome, LoginProgress::Complete(_)), "{reply:?}");
            black_box(reply)
        })
    });
}

criterion_group!(benches, login);
criterion_main!(benches);
