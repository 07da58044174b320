//! The `vigil` command line: parse arguments, load the config, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "vigil", version, about = "Visual regression monitoring daemon")]
struct Cli {
    /// Log line format (filter with RUST_LOG, e.g. RUST_LOG=vigil=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml")]
        config: PathBuf,
        /// Run every enabled monitor once, wait for the verdicts and alerts, print a table and
        /// exit: 0 when nothing changed or failed, 1 when something did, 2 on error (for CI).
        #[arg(long)]
        once: bool,
        /// The parts of vigil this process runs, comma-separated: api, capture, monitor, ui.
        /// Default: all of them (without capture when capture.provider is set). `--once` runs
        /// what it needs and ignores this.
        #[arg(long, env = "VIGIL_ROLES")]
        roles: Option<vigil::Roles>,
    },
    /// Validate a config file and show each monitor with its next three fire times.
    Check {
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml")]
        config: PathBuf,
    },
    /// Compare two PNGs (pixelmatch-compatible); exit 0 within the limits, 1 over, 2 on error.
    Diff(vigil::commands::diff::DiffArgs),
    /// Capture one page to a file with the daemon's engine, and show the timing.
    Capture(vigil::commands::capture::CaptureArgs),
    /// Approve a run's capture as the baseline: RUN_ID, or MONITOR[/VIEWPORT] for its latest change.
    Approve {
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml")]
        config: PathBuf,
        /// run_… or monitor or monitor/viewport (e.g. home/1280x800).
        target: String,
    },
    /// Mute a monitor's alerts for a while (its runs go on): DURATION like 2h or 1d, or off.
    Mute {
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml")]
        config: PathBuf,
        monitor: String,
        /// 30m, 2h, 1d … (up to a year), or off.
        duration: String,
    },
    /// Every monitor with its latest verdict and the changes awaiting review.
    Status {
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml")]
        config: PathBuf,
    },
    /// Inspect and replay webhook deliveries.
    Deliveries {
        /// (Before or after `list`/`replay`, as every other command takes it after its name.)
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "monitors.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: vigil::commands::deliveries::DeliveriesCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Diff(_)) {
        use_huge_pages();
    }
    // A one-off pass prints its own progress; the log keeps to warnings unless asked.
    let quiet = matches!(cli.command, Command::Run { once: true, .. });
    init_tracing(cli.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Check { config } => vigil::commands::check::run(&config),
        Command::Approve { config, target } => vigil::commands::review::approve(&config, &target),
        Command::Status { config } => vigil::commands::review::status(&config),
        Command::Mute { config, monitor, duration } => {
            vigil::commands::review::mute(&config, &monitor, &duration)
        }
        Command::Diff(args) => vigil::commands::diff::run(&args),
        Command::Capture(args) => vigil::commands::capture::run(&args),
        Command::Deliveries { config, command } => vigil::commands::deliveries::run(&config, &command),
        Command::Run { config, once: true, .. } => vigil::commands::once::run(&config),
        Command::Run { config, once: false, roles } => match run(&config, roles) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // One line, on stderr, whatever the log format (the log may go elsewhere).
                eprintln!("error: {}", vigil::http::client::error_chain(e.as_ref()));
                ExitCode::FAILURE
            }
        },
    }
}

/// Decoded screenshots are tens of megabytes, and on Linux each 4 KiB page of a fresh buffer
/// costs a page fault: up to a third of a `vigil diff` run. glibc backs its large allocations with
/// transparent huge pages when `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, but reads that only at
/// start, so `vigil diff` sets it and re-executes itself once (measured in docs/benchmarks.md).
/// A `GLIBC_TUNABLES` the user set is left alone; elsewhere this does nothing.
///
/// Only `vigil diff`: a child inherits the variable, and glibc moves it out of the block that
/// holds the arguments and the environment, so Chromium's processes cannot rename themselves
/// (every renderer kept the name `--type=zygote`). In the daemon the diff is a small part of a
/// run's work, next to the capture.
fn use_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // `exec` only returns on failure; then run as we are.
        let _ = std::process::Command::new(exe)
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
            .exec();
    }
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // chromiumoxide logs every CDP message it cannot parse (newer Chromium sends some) at
        // WARN/ERROR: noise for users, so only its errors that matter reach the log via vigil.
        // tokio-cron-scheduler narrates its own start-up at INFO.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "{level},sqlx=warn,chromiumoxide=off,tokio_cron_scheduler=warn"
            ))
        });
    // Colours only on a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run(path: &std::path::Path, roles: Option<vigil::Roles>) -> anyhow::Result<()> {
    let config = vigil::config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = vigil::shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let options = vigil::RunOptions { config_path: Some(path.to_owned()), roles, ..Default::default() };
        vigil::run_with(config, listener, shutdown, options).await.map_err(anyhow::Error::from)
    })
}
