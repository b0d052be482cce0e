//! `palisade bench`: a load generator for any iSCSI target, on the `palisade-initiator` crate
//! (URLs, login, the pipelined connection of a session with MC/S). Module map:
//! - [`workload`]: patterns and LBA choice; [`pattern`]: the self-checking block format.
//! - [`runner`]: sessions, budgets, progress; [`report`]: text/JSON report; [`histogram`]: latency.

pub mod args;
pub mod error;
pub mod histogram;
pub mod pattern;
pub mod report;
pub mod runner;
pub mod workload;

pub use args::BenchArgs;
pub use error::BenchError;
pub use report::Report;
pub use runner::run;

/// Exit status: the run itself failed (connection, login, protocol, bad option).
pub const EXIT_FAILED: u8 = 2;
/// Exit status: the run completed but commands returned SCSI errors.
pub const EXIT_SCSI_ERRORS: u8 = 1;
/// Exit status: `--verify` found blocks that do not hold what was written.
pub const EXIT_MISMATCH: u8 = 3;

/// Runs `palisade bench` to completion: prints the report (text or JSON) on stdout and returns
/// the process exit status.
pub fn main(args: BenchArgs) -> u8 {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palisade bench: cannot start the runtime: {e}");
            return EXIT_FAILED;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.verify.as_ref().is_some_and(|v| v.mismatch_count > 0) {
                EXIT_MISMATCH
            } else if report.errors > 0 {
                EXIT_SCSI_ERRORS
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("palisade bench: {e}");
            EXIT_FAILED
        }
    }
}
