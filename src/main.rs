//! `palisade`: an iSCSI target with SCSI-3 persistent reservations.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use palisade::admin::{cli, protocol::RequestKind};
use palisade::config::{parse_listen_addr, Config, DEFAULT_DATA_DIR};
use palisade::server::Server;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "palisade", version, about = "iSCSI target and shared-disk storage server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve iSCSI targets. Without --config: one 1 GiB file-backed LUN, no authentication.
    Serve {
        /// Portal address of the zero-config target (default 127.0.0.1:3260).
        #[arg(long, value_parser = parse_listen)]
        listen: Option<SocketAddr>,
        /// Folder of the zero-config LUN image and server state (default ./palisade-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML configuration (see docs/configuration.md).
        #[arg(long, conflicts_with_all = ["listen", "data_dir"])]
        config: Option<PathBuf>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Check a configuration file and print what it would serve.
    CheckConfig { path: PathBuf },
    /// Measure any iSCSI target: IOPS, MiB/s, latency percentiles, optional data verification.
    Bench(palisade::bench::BenchArgs),
    /// Persistent reservations of a running server.
    Pr {
        #[command(subcommand)]
        command: PrCommand,
    },
    /// Sessions of a running server: initiator, ISID, peer, negotiated parameters.
    Sessions(AdminArgs),
    /// Logical units of a running server: backend, size, identity.
    Luns(AdminArgs),
    /// Cluster mode: a running gateway's membership and the gateways it sees.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// This gateway's state (serving, self-fenced, unavailable), lease and self-fence clock, and
    /// every gateway it has seen with its portals and relative port ids.
    Status(AdminArgs),
}

#[derive(Subcommand)]
enum PrCommand {
    /// Registrants and reservation holder of every LUN.
    Show(AdminArgs),
}

/// Which running server to ask (through its admin socket, docs/operations.md).
#[derive(Args)]
struct AdminArgs {
    /// The server's data folder: its socket is DIR/palisade.sock (default ./palisade-data).
    #[arg(long, conflicts_with_all = ["socket", "config"])]
    data_dir: Option<PathBuf>,
    /// The admin socket itself.
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// The server's configuration file: its [admin] socket.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Asks the running server one question and prints the answer.
fn admin_command(kind: RequestKind, args: AdminArgs) -> ExitCode {
    let answer = cli::socket_path(args.data_dir.as_deref(), args.socket.as_deref(), args.config.as_deref())
        .and_then(|socket| cli::run(kind, &socket, args.json));
    match answer {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    parse_listen_addr(s).map_err(|e| e.to_string())
}

/// glibc hands every freed buffer of 128 KiB or more back to the kernel (munmap, heap trim), so
/// each 256 KiB READ or Data-Out buffer would fault its pages in again; the profile showed ~20 %
/// of a large-read workload there. Keeping them in the heap lets the next command reuse them.
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => ExitCode::from(palisade::bench::main(args)),
        Command::Pr { command: PrCommand::Show(args) } => admin_command(RequestKind::Reservations, args),
        Command::Sessions(args) => admin_command(RequestKind::Sessions, args),
        Command::Luns(args) => admin_command(RequestKind::Luns, args),
        Command::Cluster { command: ClusterCommand::Status(args) } => admin_command(RequestKind::Cluster, args),
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(c) => {
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { listen, data_dir, config, log_json } => {
            init_logging(log_json);
            let config_path = config.clone();
            let config = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::zero_config(
                    listen.unwrap_or_else(Config::default_listen),
                    data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                ),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            match runtime.block_on(serve(config, config_path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config, config_path: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before the portals are bound: an early SIGHUP must not kill the server.
    let hangups = signal(SignalKind::hangup())?;
    let server = Server::bind(&config).await?;
    for line in server.connect_hints() {
        println!("{line}");
    }
    tokio::spawn(reload_on_hangup(hangups, config_path, server.reload_handle()));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tx.send_replace(true);
    });
    server.run(rx).await?;
    Ok(())
}

/// SIGHUP: re-read the --config file and apply it (docs/operations.md). A file that does not
/// load, or a change that needs a restart, is refused with the reason; the running
/// configuration stays.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    path: Option<PathBuf>,
    handle: palisade::server::ReloadHandle,
) {
    while hangups.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!("SIGHUP: serving without --config, nothing to reload");
            continue;
        };
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload refused, still serving the previous configuration: {e}");
                continue;
            }
        };
        for w in &config.warnings {
            tracing::warn!("config: {w}");
        }
        match handle.reload(&config).await {
            Ok(s) => {
                if !s.needs_restart.is_empty() {
                    tracing::warn!(tables = ?s.needs_restart, "reload: these settings changed but apply only after a restart");
                }
                tracing::info!(added = ?s.added, removed = ?s.removed, changed = ?s.changed, unchanged = s.unchanged, "configuration reloaded");
            }
            Err(e) => tracing::error!("config reload refused, still serving the previous configuration: {e}"),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file, pipe or journal gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
