//! The real binary judged by libiscsi's command-line clients (iscsi-ls, iscsi-inq,
//! iscsi-readcapacity16): discovery, REPORT LUNS, standard INQUIRY, the VPD pages, READ CAPACITY.
//! Outputs are parsed and their values asserted. Tools: `scripts/install-deps.sh`.

mod common;

use common::{run_ok, run_with_timeout, TargetProcess, DEFAULT_LUN_BYTES};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The LUN number of the default disk: 0, or the LUN of PALISADE_TEST_EXTERNAL_URL.
fn disk_lun(t: &TargetProcess) -> u64 {
    if t.is_external() {
        t.url(0).rsplit('/').next().and_then(|l| l.parse().ok()).expect("LUN in external URL")
    } else {
        0
    }
}

/// Vendor the standard INQUIRY must report (overridable only when testing an external target).
fn expected_vendor(t: &TargetProcess) -> String {
    if t.is_external() {
        std::env::var("PALISADE_TEST_EXPECT_VENDOR").expect("set PALISADE_TEST_EXPECT_VENDOR for an external target")
    } else {
        "PALISADE".to_string()
    }
}

fn disk_url(t: &TargetProcess) -> String {
    t.url(disk_lun(t))
}

/// `Key:Value` lines of iscsi-inq / iscsi-readcapacity16 output (first occurrence wins).
fn key_values(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once(':') {
            map.entry(k.trim().to_string()).or_insert_with(|| v.trim().to_string());
        }
    }
    map
}

fn inq(url: &str, extra: &[&str]) -> String {
    let mut args: Vec<&str> = extra.to_vec();
    args.push(url);
    run_ok("iscsi-inq", &args, TOOL_TIMEOUT)
}

/// VPD page through `iscsi-inq -e 1 -c <decimal page>` (the tool parses the page code as decimal).
fn vpd(url: &str, page: u8) -> String {
    inq(url, &["-e", "1", "-c", &page.to_string()])
}

/// The decimal number printed after `label:` (label at a line start or after a space; some tools
/// print several `LABEL:value` pairs on one line).
fn number(out: &str, label: &str) -> u64 {
    let pat = format!("{label}:");
    for line in out.lines() {
        let mut from = 0;
        while let Some(pos) = line[from..].find(&pat).map(|p| p + from) {
            if pos == 0 || line.as_bytes()[pos - 1] == b' ' {
                let digits: String =
                    line[pos + pat.len()..].trim_start().chars().take_while(char::is_ascii_digit).collect();
                return digits.parse().unwrap_or_else(|_| panic!("`{label}` is not followed by a number in {line:?}"));
            }
            from = pos + pat.len();
        }
    }
    panic!("no `{label}:` in output:\n{out}");
}

#[test]
fn iscsi_ls_discovers_the_target_and_lists_lun0_with_its_size() {
    let t = TargetProcess::start_default();
    let out = run_ok("iscsi-ls", &["-s", &t.portal_url()], TOOL_TIMEOUT);
    let target_line =
        out.lines().find(|l| l.starts_with("Target:")).unwrap_or_else(|| panic!("no Target line:\n{out}"));
    // SendTargets answer: TargetName and TargetAddress ip:port,tpgt (RFC 7143 appendix C).
    assert!(target_line.starts_with(&format!("Target:{} Portal:{},", t.iqn(), t.portal())), "{target_line}");
    let tpgt = target_line.rsplit(',').next().unwrap();
    assert!(tpgt.parse::<u16>().is_ok(), "portal group tag not a number: {target_line}");
    // REPORT LUNS must list the disk, a DIRECT_ACCESS device; iscsi-ls prints block_size * last LBA,
    // so a 1 GiB LUN shows as 1023M.
    let lun_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("Lun:")).collect();
    let want = format!("Lun:{:<4} Type:DIRECT_ACCESS (Size:1023M)", disk_lun(&t));
    assert!(lun_lines.contains(&want.as_str()), "expected `{want}` in:\n{out}");
    if !t.is_external() {
        assert_eq!(lun_lines.len(), 1, "the default target has exactly one LUN:\n{out}");
    }
}

#[test]
fn standard_inquiry_identifies_a_palisade_sbc_disk() {
    let t = TargetProcess::start_default();
    let out = inq(&disk_url(&t), &[]);
    let kv = key_values(&out);
    assert_eq!(kv.get("Vendor").map(String::as_str), Some(expected_vendor(&t).as_str()), "{out}");
    assert_eq!(kv["Peripheral Qualifier"], "CONNECTED", "{out}");
    assert_eq!(kv["Peripheral Device Type"], "DIRECT_ACCESS", "{out}");
    assert_eq!(kv["Removable"], "0", "{out}");
    assert!(!kv["Product"].is_empty(), "empty product id:\n{out}");
    assert!(!kv.get("Revision").map(String::is_empty).unwrap_or(true), "no revision:\n{out}");
    // SPC-4 §6.6.2: RESPONSE DATA FORMAT shall be 2; CMDQUE=1 (command management model).
    assert_eq!(kv["ReponseDataFormat"], "2", "{out}");
    assert_eq!(kv["CmdQue"], "1", "{out}");
    // iscsi-test-cu only runs its SBC-3 tests when version descriptor 0x04C0 is present.
    assert!(out.lines().any(|l| l.starts_with("Version Descriptor:04c0")), "no SBC-3 version descriptor:\n{out}");
}

#[test]
fn supported_vpd_pages_are_ascending_and_each_one_answers() {
    let t = TargetProcess::start_default();
    let url = disk_url(&t);
    let out = vpd(&url, 0x00);
    let pages: Vec<u8> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Page:0x"))
        .map(|l| u8::from_str_radix(&l[..2], 16).expect("page code"))
        .collect();
    for required in [0x00, 0x80, 0x83, 0xb0, 0xb1] {
        assert!(pages.contains(&required), "page {required:#04x} not listed:\n{out}");
    }
    // SPC-4 §7.8.16: the list is in ascending order.
    assert!(pages.windows(2).all(|w| w[0] < w[1]), "pages not ascending: {pages:02x?}");
    // libiscsi 1.19's iscsi-inq cannot decode the third-party copy page (0x8f) and errors out
    // on it; its content is checked by the unit tests in src/scsi/inquiry.rs instead.
    for page in pages.iter().filter(|&&p| p != 0 && p != 0x8f) {
        let body = vpd(&url, *page);
        assert!(!body.trim().is_empty(), "page {page:#04x} printed nothing");
    }
}

#[test]
fn unit_serial_number_is_stable_across_sessions_and_initiators() {
    let t = TargetProcess::start_default();
    let url = disk_url(&t);
    let serial = |extra: &[&str]| -> String {
        let mut args = extra.to_vec();
        args.extend(["-e", "1", "-c", "128"]);
        let out = inq(&url, &args);
        let line = out.lines().find(|l| l.starts_with("Unit Serial Number:")).unwrap_or_else(|| panic!("{out}"));
        let inner = line.split_once('[').and_then(|(_, r)| r.rsplit_once(']')).map(|(s, _)| s).expect("[serial]");
        inner.trim().to_string()
    };
    let first = serial(&[]);
    assert!(!first.is_empty(), "empty serial number");
    // SPC-4 §7.8.18: PRODUCT SERIAL NUMBER is ASCII (0x20..0x7e).
    assert!(first.bytes().all(|b| (0x20..0x7f).contains(&b)), "serial not printable ASCII: {first:?}");
    assert_eq!(serial(&[]), first, "serial changed between two sessions");
    assert_eq!(serial(&["-i", "iqn.2026-11.io.palisade.test:other-host"]), first, "serial differs per initiator");
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Designator {
    code_set: String,
    association: String,
    kind: String,
    value: String,
}

fn designators(out: &str) -> Vec<Designator> {
    let mut list: Vec<Designator> = Vec::new();
    for line in out.lines() {
        if line.starts_with("DEVICE DESIGNATOR #") {
            list.push(Designator::default());
            continue;
        }
        let Some(cur) = list.last_mut() else { continue };
        let Some((k, v)) = line.split_once(':') else { continue };
        match k {
            "Code Set" => cur.code_set = v.to_string(),
            "Association" => cur.association = v.to_string(),
            "Designator Type" => cur.kind = v.to_string(),
            "Designator" => cur.value = v.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => {}
        }
    }
    list
}

#[test]
fn device_identification_has_a_stable_naa_logical_unit_designator() {
    let t = TargetProcess::start_default();
    let url = disk_url(&t);
    let out = vpd(&url, 0x83);
    assert!(out.contains("Page Code:(0x83) DEVICE_IDENTIFICATION"), "{out}");
    let list = designators(&out);
    assert!(!list.is_empty(), "no designators:\n{out}");
    let naa: Vec<&Designator> =
        list.iter().filter(|d| d.kind == "(3) NAA" && d.association == "(0) LOGICAL_UNIT").collect();
    assert!(!naa.is_empty(), "no NAA logical-unit designator (SPC-4 §7.8.6.1):\n{out}");
    assert!(naa.iter().all(|d| d.code_set == "(1) BINARY"), "NAA designator must be binary:\n{out}");
    // A T10 vendor ID designator starts with the 8-byte T10 vendor identification.
    for d in list.iter().filter(|d| d.kind.contains("T10")) {
        assert!(d.value.starts_with(&expected_vendor(&t)), "T10 designator {d:?} does not start with the vendor");
    }
    // The same LU must identify identically in a second session.
    assert_eq!(designators(&vpd(&url, 0x83)), list, "device identification changed between sessions");
}

#[test]
fn block_limits_and_characteristics_pages_are_consistent() {
    let t = TargetProcess::start_default();
    let url = disk_url(&t);
    let bl = vpd(&url, 0xb0);
    let max = number(&bl, "maximum transfer length");
    let opt = number(&bl, "optimal transfer length");
    let gran = number(&bl, "optimal transfer length granularity");
    // SBC-3 §6.5.3: 0 means "not reported"; when both are reported, optimal <= maximum.
    if max != 0 && opt != 0 {
        assert!(opt <= max, "optimal transfer length {opt} > maximum {max}");
    }
    if opt != 0 && gran != 0 {
        assert!(gran <= opt, "granularity {gran} > optimal transfer length {opt}");
    }
    let bdc = vpd(&url, 0xb1);
    assert!(bdc.contains("Medium Rotation Rate:"), "{bdc}");

    // LBPME in READ CAPACITY(16) and the provisioning page must agree (SBC-3 §6.5.4, §5.16.2).
    let rc = run_ok("iscsi-readcapacity16", &[&url], TOOL_TIMEOUT);
    let pages = vpd(&url, 0x00);
    if number(&rc, "LBPME") == 1 {
        assert!(pages.contains("Page:0xb2"), "LBPME=1 but no logical block provisioning page:\n{pages}");
        let lbp = vpd(&url, 0xb2);
        assert!(number(&lbp, "lbpu") == 1 || number(&lbp, "lbpws") == 1 || number(&lbp, "lbpws10") == 1, "{lbp}");
    }
}

#[test]
fn read_capacity16_reports_one_gib_of_512_byte_blocks() {
    let t = TargetProcess::start_default();
    let out = run_ok("iscsi-readcapacity16", &[&disk_url(&t)], TOOL_TIMEOUT);
    assert_eq!(number(&out, "LOGICAL BLOCK LENGTH IN BYTES"), 512, "{out}");
    assert_eq!(number(&out, "RETURNED LOGICAL BLOCK ADDRESS"), DEFAULT_LUN_BYTES / 512 - 1, "{out}");
    assert_eq!(number(&out, "Total size"), DEFAULT_LUN_BYTES, "{out}");
    assert_eq!(number(&out, "PROT_EN"), 0, "{out}");
}

#[test]
fn unknown_vpd_page_is_rejected_with_invalid_field_in_cdb() {
    let t = TargetProcess::start_default();
    let out = run_with_timeout(Command::new("iscsi-inq").args(["-e", "1", "-c", "153", &disk_url(&t)]), TOOL_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "VPD page 0x99 accepted");
    // SPC-4 §6.6.1: unsupported page code -> ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h).
    assert!(err.contains("ILLEGAL_REQUEST") && err.contains("0x2400"), "{err}");
}

#[test]
fn missing_lun_is_reported_as_not_supported() {
    let t = TargetProcess::start_default();
    let out = run_with_timeout(Command::new("iscsi-readcapacity16").arg(t.url(7)), TOOL_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "LUN 7 answered READ CAPACITY");
    // SAM-5 "incorrect logical unit selection": commands other than INQUIRY/REQUEST SENSE to an absent LU -> ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
    assert!(err.contains("ILLEGAL_REQUEST") && err.contains("0x2500"), "{err}");
}
