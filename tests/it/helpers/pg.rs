//! The PostgreSQL server the tests use: `VIGIL_TEST_POSTGRES_URL` when it is set, otherwise a
//! private, throwaway cluster this test process starts on first use — `initdb` into a temp dir,
//! `postgres` on a free loopback port with its socket in that dir — and that goes away with the
//! process. It never touches a system-wide cluster or the user's databases.
//!
//! Rust runs no destructor for a static when the test binary exits, so the cluster is started by
//! a small shell guard that waits for this process to end (`tail --pid`), however it ends (a
//! panic, a kill), then stops the server and removes its directory: no server is left behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The admin URL of the server the tests create their databases on.
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("VIGIL_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_cluster()
            .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL for the tests: {e}")),
    })
}

/// Finds the server binaries: on `PATH`, else in Debian's `/usr/lib/postgresql/<version>/bin`
/// (newest version first).
fn server_bin_dir() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        let version = p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str());
        std::cmp::Reverse(version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0))
    });
    on_path.into_iter().chain(debian).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn start_cluster() -> Result<String, String> {
    let bin = server_bin_dir().ok_or(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql; \
         install them (`scripts/dev test` does: apt-get install postgresql) or set VIGIL_TEST_POSTGRES_URL",
    )?;
    let dir =
        tempfile::Builder::new().prefix("vigil-test-pg-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let url = init_and_start(&bin, dir.path())?;
    // From here on the guard removes it, after the server has stopped.
    let _ = dir.keep();
    Ok(url)
}

/// `initdb` into `dir/data`, then the server, owned by its guard; tries three ports, since a
/// free port can be taken by someone else before the server binds it.
fn init_and_start(bin: &Path, dir: &Path) -> Result<String, String> {
    // PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user
    // (or `nobody` where there is none).
    let run_as = is_root().then(|| if user_exists("postgres") { "postgres" } else { "nobody" });
    if let Some(user) = run_as {
        let status = Command::new("chown").args(["-R", user]).arg(dir).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(format!("cannot give {} to the user {user}", dir.display()));
        }
    }
    let data = dir.join("data");
    let initdb = as_user(run_as, &bin.join("initdb"))
        .args(["--auth=trust", "--username=vigil", "--encoding=UTF8", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr)));
    }
    // Enough connections for many tests at once, each with its own pool; no durability needed.
    let settings = format!(
        "-c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=400 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB",
        dir.display()
    );
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let _ = std::fs::remove_file(dir.join("failed"));
        let guard = guard_script(bin, &data, dir, run_as, &settings, port);
        Command::new("sh")
            .args(["-c", &guard])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C to the test run must not take the guard with it
            // while the server (which pg_ctl detaches) lives on.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the guard shell: {e}"))?;
        match wait_ready(&dir.join("ready"), &dir.join("server.log")) {
            Ok(()) => return Ok(format!("postgres://vigil@127.0.0.1:{port}/postgres")),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The shell that owns the server: starts it, says it is up (`ready`), waits for the test
/// process to exit, then stops the server and removes the directory.
fn guard_script(
    bin: &Path,
    data: &Path,
    dir: &Path,
    run_as: Option<&str>,
    settings: &str,
    port: u16,
) -> String {
    let pg_ctl = bin.join("pg_ctl");
    let prefix = run_as.map(|u| format!("runuser -u {u} -- ")).unwrap_or_default();
    let (data, dir, pg_ctl) = (data.display(), dir.display(), pg_ctl.display());
    format!(
        "{prefix}{pg_ctl} -D {data} -l {dir}/server.log -w -t 60 -o '-p {port} {settings}' start \
           && touch {dir}/ready || touch {dir}/failed; \
         tail --pid={pid} -f /dev/null; \
         {prefix}{pg_ctl} -D {data} -m immediate -w stop; rm -rf {dir}",
        pid = std::process::id(),
    )
}

fn wait_ready(ready: &Path, log: &Path) -> Result<(), String> {
    let failed = ready.with_file_name("failed");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if ready.exists() {
            return Ok(());
        }
        if failed.exists() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("the server did not start:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the server did not start within 90 s".into())
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
