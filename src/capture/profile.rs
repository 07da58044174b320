//! Chromium's profile directories under the data directory: named after the process that
//! started them (`chromium-<pid>-<host>-…`), so that replicas sharing the directory know their
//! own; what a vigil that died left there (profiles, and browsers still running in them) is
//! cleaned up at the next start.

use std::path::Path;

/// Kills (SIGKILL) the Chromium processes this process started with profiles under
/// `profile_root`: for an exit that cannot wait for them to close.
pub fn kill_own_browsers(profile_root: &Path) {
    kill_in(&profile_root.join(profile_prefix()), Match::Prefix);
}

/// SIGKILLs every process of this user whose profile directory is `profile`; whether any was
/// found.
pub(super) fn kill_by_profile(profile: &Path) -> bool {
    kill_in(profile, Match::Exact)
}

/// How a profile directory is matched: exactly, or every directory whose name starts so.
#[derive(Clone, Copy, PartialEq)]
enum Match {
    Exact,
    Prefix,
}

fn kill_in(profile: &Path, how: Match) -> bool {
    let found = in_profile(profile, how);
    for &pid in &found {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    !found.is_empty()
}

/// The processes of this user whose command line names the profile directory `profile` (or,
/// with [`Match::Prefix`], one whose name starts so), compared as text (`pkill -f` took it as
/// a regular expression, and a directory name is not one). Chromium was given the absolute
/// path. Its child processes carry the browser's `--user-data-dir`; once they rename themselves
/// the command line is one string, so it is searched, not split.
fn in_profile(profile: &Path, how: Match) -> Vec<rustix::process::Pid> {
    let profile = std::path::absolute(profile).unwrap_or_else(|_| profile.to_path_buf());
    let wanted = format!("--user-data-dir={}", profile.display());
    let uid = rustix::process::getuid().as_raw();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid as u32 == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if !names_profile(&cmdline, &wanted, how) {
            continue;
        }
        // The real uid (`/proc/<pid>` itself is root's for a process that is not dumpable, as
        // Chromium's sandboxed ones are); read only for the few that name the profile.
        let owner = std::fs::read_to_string(entry.path().join("status")).ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse::<u32>().ok()
        });
        if owner == Some(uid) {
            found.extend(rustix::process::Pid::from_raw(pid));
        }
    }
    found
}

/// Whether a command line (arguments separated by NULs, or one renamed title) holds `wanted`:
/// as a whole argument with [`Match::Exact`] (`…/chromium-1-h-ab` is not `…/chromium-1-h-abc`).
fn names_profile(cmdline: &[u8], wanted: &str, how: Match) -> bool {
    let text = String::from_utf8_lossy(cmdline).replace('\0', " ");
    text.match_indices(wanted).any(|(at, _)| {
        how == Match::Prefix || matches!(text[at + wanted.len()..].chars().next(), None | Some(' '))
    })
}

/// The start of this process's profile directories: `chromium-<pid>-<host>-`. Replicas may
/// share a data directory (issue 14); each knows its own profiles by this name.
pub(super) fn profile_prefix() -> String {
    format!("chromium-{}-{}-", std::process::id(), host_tag())
}

/// The host name with anything but letters and digits replaced, for a directory name.
fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Whether the profile directory `name` belongs to a process of this host that is gone.
/// Another host's profiles, and profiles of a live process, are not this process's to remove.
fn is_stale_profile(name: &str, host: &str, alive: impl Fn(u32) -> bool) -> bool {
    let Some(rest) = name.strip_prefix("chromium-") else { return false };
    // Named before profiles carried their process (`chromium-XXXXXX`): left by an older vigil.
    if rest.len() == 6 && rest.chars().all(|c| c.is_ascii_alphanumeric()) {
        return true;
    }
    let mut parts = rest.splitn(3, '-');
    match (parts.next().and_then(|p| p.parse::<u32>().ok()), parts.next(), parts.next()) {
        (Some(pid), Some(h), Some(_)) => h == host && !alive(pid),
        _ => false,
    }
}

/// Profiles of browsers whose daemon died without cleaning up (kill -9, power loss) are left
/// in the profile root; removed at start so months of restarts do not pile them up. After a
/// kill -9 the browser itself may still run in one, orphaned, with its renderers: killed first.
/// Only this host's profiles of processes that are gone: a replica starting beside others
/// sharing the directory leaves their live browsers alone.
pub(super) fn remove_stale_profiles(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let host = host_tag();
    // This process has no browser yet: a profile under its own pid is a previous life's (a
    // container restarted keeps pid 1 and its host name).
    let own = std::process::id();
    let alive = |pid: u32| pid != own && std::path::Path::new(&format!("/proc/{pid}")).exists();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    for entry in entries.flatten() {
        let path = entry.path();
        if is_stale_profile(&entry.file_name().to_string_lossy(), &host, alive) && path.is_dir() {
            if kill_by_profile(&path) {
                tracing::warn!(profile = %path.display(), "killed a browser left running by a vigil that was killed");
                // Gone within a moment (SIGKILL); bounded, all profiles together, in case one is
                // stuck in the kernel (this runs before the pool's first browser, at start).
                while !in_profile(&path, Match::Exact).is_empty() && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(profile = %path.display(), "removed a stale browser profile"),
                Err(e) => {
                    tracing::warn!(profile = %path.display(), error = %e, "cannot remove a stale browser profile")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_found_in_a_command_line_as_written() {
        let prefix = "--user-data-dir=/srv/vigil (prod)/chromium-42-web1-";
        let exact = "--user-data-dir=/srv/vigil (prod)/chromium-42-web1-a8Xk2q";
        let args = b"/usr/lib/chromium/chromium\0--headless=new\0--user-data-dir=/srv/vigil (prod)/chromium-42-web1-a8Xk2q\0";
        assert!(names_profile(args, prefix, Match::Prefix), "the browser, its arguments NUL-separated");
        assert!(names_profile(args, exact, Match::Exact));
        let renamed = b"/usr/lib/chromium/chromium --type=renderer --user-data-dir=/srv/vigil (prod)/chromium-42-web1-a8Xk2q --lang=en";
        assert!(names_profile(renamed, prefix, Match::Prefix), "a child that renamed itself");
        assert!(names_profile(renamed, exact, Match::Exact));
        let other = b"chromium\0--user-data-dir=/srv/vigil (prod)/chromium-43-web1-zz\0";
        assert!(!names_profile(other, prefix, Match::Prefix));
        // A longer name that starts with the profile's is another profile.
        let longer = b"chromium\0--user-data-dir=/srv/vigil (prod)/chromium-42-web1-a8Xk2qZ\0";
        assert!(!names_profile(longer, exact, Match::Exact));
        assert!(names_profile(longer, prefix, Match::Prefix));
    }

    #[test]
    fn only_this_hosts_profiles_of_gone_processes_are_stale() {
        let alive = |pid: u32| pid == 100;
        assert!(is_stale_profile("chromium-42-web1-a8Xk2q", "web1", alive), "a dead process of this host");
        assert!(!is_stale_profile("chromium-100-web1-a8Xk2q", "web1", alive), "a live replica's");
        assert!(!is_stale_profile("chromium-42-web2-a8Xk2q", "web1", alive), "another host's");
        assert!(is_stale_profile("chromium-a8Xk2q", "web1", alive), "an older vigil's, unnamed");
        assert!(!is_stale_profile("baselines", "web1", alive));
        assert!(!is_stale_profile("chromium-|", "web1", alive), "not a name vigil gives");
        assert!(!is_stale_profile("chromium-notes", "web1", alive), "not a name vigil gives");
        assert!(profile_prefix().starts_with(&format!("chromium-{}-", std::process::id())));
    }
}
