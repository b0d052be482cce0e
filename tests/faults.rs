//! Faults against the real binary (docs/hardening.md): connections reset in the middle of a
//! write (Data-Out half sent) or a read (Data-In half received), many times over, leak no task
//! or budget and never apply a torn write over acknowledged data; a full file system answers
//! DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h) and I/O errors of the backing
//! file answer MEDIUM ERROR, while the server keeps serving everything else.
//!
//! The disk-full and I/O-error tests mount a size-limited tmpfs and a loop-mounted ext4 (which
//! is then shut down with EXT4_IOC_SHUTDOWN, so every read and write of the file fails with
//! EIO); they need root (CI and the test machines run as root) and fail, saying why, when a
//! mount or mkfs is refused: a fault test that did not run must not pass.

mod common;
mod hardening;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::raw_initiator::*;
use hardening::{free_port, stamp, target_toml, unique_dir, TargetProcess, IQN};
use pdu::msg::TargetPdu;

const INITIATOR: &str = "iqn.2026-11.test:faults";

fn opts(isid_tail: u8) -> LoginOptions {
    LoginOptions::normal(INITIATOR, IQN).isid([0x80, 0, 0, 0, 0x66, isid_tail])
}

fn blocks(round: u32, lba: u32, count: u32) -> Vec<u8> {
    (0..count).flat_map(|b| stamp(round, b, lba + b)).collect()
}

/// WRITE(10) with FUA (SBC-3 §5.35: the data is on the medium before GOOD).
fn write10_fua(ini: &mut RawInitiator, lba: u32, data: &[u8]) {
    let mut cdb = write10_cdb(lba, (data.len() / 512) as u16);
    cdb[1] |= 0x08;
    ini.exec_good(0, &cdb, 0, data);
}

#[test]
fn resets_mid_write_and_mid_read_leak_nothing_and_lose_no_acknowledged_write() {
    let lun = "[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"64MiB\"\n";
    let dir = unique_dir("palisade-faults");
    let mut s = TargetProcess::start_config_at(&target_toml(lun, ""), free_port(), &dir);
    let portal = s.portal();
    const ROUNDS: u32 = 40;
    let started = Instant::now();
    let mut rss_after_warmup = 0;
    for round in 0..ROUNDS {
        // An acknowledged 1 MiB write at the region the torn commands will aim at.
        let lba = (round % 16) * 2048;
        let mut ini = RawInitiator::login_ok(&portal, &opts(1));
        ini.clear_unit_attention(0);
        let acked = blocks(round, lba, 2048);
        if round % 2 == 0 {
            write10_fua(&mut ini, lba, &acked);
        } else {
            ini.write10(0, lba, &acked);
        }

        // Torn write: the command, the first R2T answered halfway, then the connection dies.
        let garbage = vec![0xEE; 1 << 20];
        let cmd = ini.command(0, &write10_cdb(lba, 2048), 0, 1 << 20, &[]);
        ini.send(&cmd.encode());
        let r2t = match ini.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::R2t(r) => r,
            other => panic!("expected an R2T, got {other:?}"),
        };
        let mut half = r2t.clone();
        half.desired_data_transfer_length /= 2;
        ini.answer_r2t(&half, 0, &garbage);
        // Unread data at close makes the kernel send RST instead of FIN (a reset, not a close).
        let ping = ini.nop_out(b"x");
        ini.send(&ping.encode());
        std::thread::sleep(Duration::from_millis(20));
        drop(ini);

        // Torn read: a 1 MiB READ whose Data-In is half received.
        let mut ini = RawInitiator::login_ok(&portal, &opts(2));
        ini.clear_unit_attention(0);
        let cmd = ini.command(0, &read10_cdb(lba, 2048), 1 << 20, 0, &[]);
        ini.send(&cmd.encode());
        let mut got = 0usize;
        while got < (1 << 19) {
            match ini.recv_msg(ANSWER_TIMEOUT) {
                TargetPdu::DataIn(d) => {
                    assert_eq!(&d.data[..], &acked[d.buffer_offset as usize..][..d.data.len()], "read data");
                    got += d.data.len();
                }
                other => panic!("expected Data-In, got {other:?}"),
            }
        }
        drop(ini);
        if round == 10 {
            std::thread::sleep(Duration::from_millis(300));
            rss_after_warmup = s.rss_kib();
        }
        assert!(s.is_running(), "server died in round {round}");
    }
    // Let the last connections wind down, then the gauges of the last close must be zero.
    std::thread::sleep(Duration::from_millis(800));
    let (live, held) = s.last_close_gauges().expect("a connection closed line");
    let rss_end = s.rss_kib();
    println!(
        "{ROUNDS} rounds of torn write + torn read in {:?}; live_tasks={live} held_data_bytes={held}; \
         RSS after round 10 {rss_after_warmup} KiB, at the end {rss_end} KiB",
        started.elapsed()
    );
    assert_eq!((live, held), (0, 0), "a torn command left a task or its data budget behind");
    assert!(rss_end < rss_after_warmup + 16 * 1024, "memory grew with every torn command");

    // No acknowledged write was lost or overwritten by a torn one: each region holds the
    // last acknowledged write aimed at it.
    let mut ini = RawInitiator::login_ok(&portal, &opts(3));
    ini.clear_unit_attention(0);
    for region in 0..16u32 {
        let last_round = (0..ROUNDS).rev().find(|r| r % 16 == region).unwrap();
        let lba = region * 2048;
        assert_eq!(ini.read10(0, lba, 2048), blocks(last_round, lba, 2048), "region {region} (round {last_round})");
    }
    assert!(!s.log().contains("panicked"));
}

/// A file system mounted at a test folder, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    /// Mounts with `mount ARGS AT`; panics with mount's reason when refused (needs root).
    fn new(args: &[&str], at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(args).arg(at).output().expect("cannot run mount");
        assert!(
            out.status.success(),
            "mount {args:?} refused (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn two_luns(path: &str) -> String {
    format!(
        "[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{path}\"\nsize = \"64MiB\"\n\n\
         [[targets.luns]]\nid = 1\nbackend = \"memory\"\nsize = \"4MiB\"\n"
    )
}

/// The LUN 1 round trip every fault test uses to show the server still serves.
fn other_lun_works(ini: &mut RawInitiator, round: u32) {
    let data = blocks(round, 7, 16);
    let cdb = write10_cdb(7, 16);
    ini.exec_good(1, &cdb, 0, &data);
    assert_eq!(ini.exec_good(1, &read10_cdb(7, 16), 16 * 512, &[]), data);
}

#[test]
fn disk_full_is_space_allocation_failed_and_the_server_keeps_serving() {
    let dir = unique_dir("palisade-diskfull");
    let mount = Mount::new(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"], &dir.join("small"));
    let lun_path = mount.0.join("lun0.img");
    let mut s =
        TargetProcess::start_config_at(&target_toml(&two_luns(&lun_path.to_string_lossy()), ""), free_port(), &dir);
    let mut ini = RawInitiator::login_ok(&s.portal(), &opts(1));
    ini.clear_unit_attention(0);
    ini.clear_unit_attention(1);
    // 64 MiB LUN, 4 MiB of file system: write 256 KiB chunks until the space runs out.
    let mut written = Vec::new();
    let mut failure = None;
    for chunk in 0..64u32 {
        let lba = chunk * 512;
        let data = blocks(chunk, lba, 512);
        let out = ini.exec(0, &write10_cdb(lba, 512), 0, &data);
        if out.status == GOOD {
            written.push((lba, data));
        } else {
            failure = Some((chunk, out));
            break;
        }
    }
    let (chunk, out) = failure.expect("a 4 MiB tmpfs never filled up");
    println!("file system full at chunk {chunk} ({} KiB written): sense {:02x?}", chunk * 256, out.sense_triple());
    // SBC-3 §4.7.3.6: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT.
    assert_sense(&out, 0x07, 0x27, 0x07);
    // Everything acknowledged before is intact, overwriting allocated blocks still works, and the
    // other LUN and new sessions are served.
    for (lba, data) in &written {
        assert_eq!(&ini.read10(0, *lba, 512), data);
    }
    let (lba, _) = written[0];
    let again = blocks(99, lba, 512);
    ini.write10(0, lba, &again);
    assert_eq!(ini.read10(0, lba, 512), again);
    other_lun_works(&mut ini, 1);
    let mut second = RawInitiator::login_ok(&s.portal(), &opts(2));
    second.clear_unit_attention(1);
    other_lun_works(&mut second, 2);
    assert!(s.is_running());
    drop((ini, second));
    s.kill9();
    drop(mount);
}

/// EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); NOLOGFLUSH: stop at once, as a dying disk would.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 0x2;

#[test]
fn backing_file_io_errors_are_medium_errors_and_the_server_keeps_serving() {
    let dir = unique_dir("palisade-eio");
    let image = dir.join("ext4.img");
    std::fs::File::create(&image).unwrap().set_len(128 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image).output();
    assert!(mkfs.as_ref().is_ok_and(|o| o.status.success()), "mkfs.ext4 (e2fsprogs) failed: {mkfs:?}");
    let mount = Mount::new(&["-o", "loop", &image.to_string_lossy()], &dir.join("disk"));
    let lun_path = mount.0.join("lun0.img");
    let mut s =
        TargetProcess::start_config_at(&target_toml(&two_luns(&lun_path.to_string_lossy()), ""), free_port(), &dir);
    let mut ini = RawInitiator::login_ok(&s.portal(), &opts(1));
    ini.clear_unit_attention(0);
    ini.clear_unit_attention(1);
    let data = blocks(1, 0, 64);
    ini.write10(0, 0, &data);
    assert_eq!(ini.read10(0, 0, 64), data);

    // The file system under the LUN dies: every read and write of the file now fails with EIO.
    let fd = std::fs::File::open(&mount.0).unwrap();
    use std::os::fd::AsRawFd;
    let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: ioctl on an open descriptor with a pointer to a live u32, as EXT4_IOC_SHUTDOWN expects.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags as *const u32) };
    assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
    drop(fd);

    // SBC-3 §4.18 / SPC-4 Annex: MEDIUM ERROR, UNRECOVERED READ ERROR and WRITE ERROR.
    let read = ini.exec(0, &read10_cdb(0, 64), 64 * 512, &[]);
    println!("read after EIO: status {:#x} sense {:02x?}", read.status, read.sense_triple());
    assert_sense(&read, 0x03, 0x11, 0x00);
    let write = ini.exec(0, &write10_cdb(128, 8), 0, &blocks(2, 128, 8));
    println!("write after EIO: status {:#x} sense {:02x?}", write.status, write.sense_triple());
    assert_sense(&write, 0x03, 0x0C, 0x00);
    for round in 0..5 {
        other_lun_works(&mut ini, round);
    }
    let mut second = RawInitiator::login_ok(&s.portal(), &opts(2));
    second.clear_unit_attention(1);
    other_lun_works(&mut second, 9);
    assert!(s.is_running());
    assert!(!s.log().contains("panicked"));
    drop((ini, second));
    s.kill9();
    drop(mount);
}

/// A loop device whose writes the blkio cgroup throttles to `write_iops`, for a server moved
/// into that cgroup: every write the server sends it waits in the kernel's throttle queue, as on
/// a slow or congested disk. Detached and removed on drop.
struct SlowDevice {
    loop_dev: String,
    cgroup: PathBuf,
}

impl SlowDevice {
    fn new(image: &Path, size: u64, write_iops: u32) -> SlowDevice {
        std::fs::File::create(image).unwrap().set_len(size).unwrap();
        let out = Command::new("losetup").args(["--find", "--show"]).arg(image).output().expect("cannot run losetup");
        assert!(
            out.status.success(),
            "losetup refused (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let loop_dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let rdev = std::fs::metadata(&loop_dev).map(|m| std::os::unix::fs::MetadataExt::rdev(&m)).unwrap();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        let name = format!("palisade-slow-{}-{minor}", std::process::id());
        let (cgroup, file, limit) = if Path::new("/sys/fs/cgroup/blkio").is_dir() {
            let cg = Path::new("/sys/fs/cgroup/blkio").join(&name);
            (cg, "blkio.throttle.write_iops_device", format!("{major}:{minor} {write_iops}"))
        } else {
            let root = Path::new("/sys/fs/cgroup");
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+io");
            (root.join(&name), "io.max", format!("{major}:{minor} wiops={write_iops}"))
        };
        std::fs::create_dir_all(&cgroup).unwrap_or_else(|e| panic!("cannot create {}: {e}", cgroup.display()));
        std::fs::write(cgroup.join(file), &limit).unwrap_or_else(|e| panic!("{file} refused {limit}: {e}"));
        SlowDevice { loop_dev, cgroup }
    }

    /// Moves every thread of `pid` (and those it starts later) under the throttle.
    fn throttle(&self, pid: u32) {
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string())
            .expect("cannot move the server into the cgroup");
    }
}

impl Drop for SlowDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.loop_dev]).status();
        // Empty once the server has exited; retried briefly, as the exit is asynchronous.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn pr_out_good(ini: &mut RawInitiator, action: u8, kind: u8, key: u64, sa_key: u64) {
    let cdb = initiator::cdb::pr_out(action, kind, 24);
    ini.exec_good(0, &cdb[..10], 0, &initiator::cdb::pr_out_param(key, sa_key, 0));
}

/// SAM-5 §7.2 / SPC-4 §5.13.11.2.5: once ABORT TASK answers FUNCTION COMPLETE, or PREEMPT AND
/// ABORT answers GOOD, nothing of the aborted writes reaches the medium any more. On a LUN
/// whose writes wait for a device (a throttled loop device with direct_io), an aborted write is
/// already in the kernel when task management reaches it: the answer must wait for it to end.
#[test]
fn aborted_writes_stuck_on_a_slow_disk_land_before_the_abort_is_answered_never_after() {
    let dir = unique_dir("palisade-slow-abort");
    let slow = SlowDevice::new(&dir.join("slow.img"), 16 << 20, 4);
    let lun =
        format!("[[targets.luns]]\nid = 0\nbackend = \"block\"\npath = \"{}\"\ndirect_io = true\n", slow.loop_dev);
    let mut s = TargetProcess::start_config_at(&target_toml(&lun, ""), free_port(), &dir);
    slow.throttle(s.pid().expect("server pid"));
    let portal = s.portal();
    let mut a = RawInitiator::login_ok(&portal, &opts(1));
    let mut b = RawInitiator::login_ok(&portal, &opts(2));
    a.clear_unit_attention(0);
    b.clear_unit_attention(0);
    const LBA: u32 = 64;
    let settled = |b: &mut RawInitiator, what: &str| {
        // Whatever the medium holds right after the answer must still be there a second later,
        // when every write the server had sent the throttled device (4 a second) has landed.
        let first = b.read10(0, LBA, 8);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(b.read10(0, LBA, 8), first, "{what}: a write landed after the abort was answered");
    };

    // 1. ABORT TASK of a write that waits in the throttle.
    b.write10(0, LBA, &blocks(1, LBA, 8));
    let write = a.command(0, &write10_cdb(LBA, 8), 0, 4096, &blocks(2, LBA, 8));
    a.send(&write.encode());
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let answer = a.task_mgmt(1, 0, write.itt, write.cmd_sn);
    println!("ABORT TASK answered {:#x} after {:?}", answer.response, started.elapsed());
    settled(&mut b, "ABORT TASK");

    // 2. The writer's connection dies with its write in the throttle, and another host preempts
    //    it with PREEMPT AND ABORT (fence_scsi's move when a node stops answering).
    pr_out_good(&mut a, 0x00, 0, 0, 0xA);
    pr_out_good(&mut b, 0x00, 0, 0, 0xB);
    pr_out_good(&mut a, 0x01, 0x05, 0xA, 0);
    let write = a.command(0, &write10_cdb(LBA, 8), 0, 4096, &blocks(3, LBA, 8));
    a.send(&write.encode());
    std::thread::sleep(Duration::from_millis(100));
    drop(a);
    let started = Instant::now();
    b.clear_unit_attention(0);
    pr_out_good(&mut b, 0x05, 0x05, 0xB, 0xA);
    println!("PREEMPT AND ABORT answered GOOD after {:?}", started.elapsed());
    settled(&mut b, "PREEMPT AND ABORT");
    assert!(!s.log().contains("panicked"));
    drop(b);
    s.kill9();
}
