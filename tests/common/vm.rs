//! What the VM tests do with a guest's console on the host: follow it line by line while the
//! guest runs, pick out the lines of a transcript, assert on what it printed. One copy for every
//! tests/vm_*.rs.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The lines of `text` (a console, a server log) containing any of KEYS, in order.
pub fn transcript(text: &str, keys: &[&str]) -> String {
    text.lines().filter(|l| keys.iter().any(|k| l.contains(k))).collect::<Vec<_>>().join("\n")
}

pub fn assert_contains(console: &str, needle: &str) {
    assert!(console.contains(needle), "console lacks {needle:?}");
}

/// The console of a running `run-in-vm.sh` (spawned with its stdout piped), line by line from a
/// reader thread, so the test can act on the guest's requests while it runs. The channel ends
/// when the guest's console does; join the thread after waiting for the VM.
pub fn console_lines(vm: &mut Child) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = vm.stdout.take().expect("console pipe");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (rx, reader)
}
