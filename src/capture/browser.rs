//! One Chromium process shared by the capture workers, launched on first use, relaunched when it
//! dies and after `recycle_after` captures, and closed (and reaped) on shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::target::{CreateBrowserContextParams, CreateTargetParams};
use chromiumoxide::error::CdpError;
use futures_util::StreamExt;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::error::CaptureError;
use super::profile::{kill_by_profile, profile_prefix, remove_stale_profiles};

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    pub chromium_path: Option<PathBuf>,
    /// Where each browser's throw-away profile directory is made.
    pub profile_root: PathBuf,
    pub recycle_after: u32,
    /// `capture.page_memory`: a renderer process above this resident size is killed.
    pub page_memory: u64,
}

/// A running browser. Dropped when the pool has replaced it and no capture uses it any more.
pub struct LiveBrowser {
    pub browser: Browser,
    alive: Arc<AtomicBool>,
    died: tokio::sync::watch::Receiver<bool>,
    captures: AtomicU32,
    /// A capture could not close its tabs: the browser is replaced rather than trusted again.
    condemned: AtomicBool,
    /// Renderers killed for using more than `capture.page_memory`.
    memory_kills: Arc<AtomicU64>,
    _profile: tempfile::TempDir,
}

impl LiveBrowser {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// A blank page in a fresh browser context whose every connection goes through `proxy`
    /// (an `http://` URL; loopback included): no cookies or storage shared with other jobs,
    /// downloads refused. (Opening it ahead of time was measured: it competes with the capture
    /// in progress for the same two cores and made throughput worse, not better.)
    pub async fn open_page(&self, proxy: &str) -> Result<(BrowserContextId, Page), CdpError> {
        open_fresh(&self.browser, proxy).await
    }

    /// Marks the browser for replacement: the next capture launches a new one, and this one is
    /// closed when no capture uses it.
    pub fn condemn(&self) {
        self.condemned.store(true, Ordering::Release);
    }

    /// Marked for replacement ([`LiveBrowser::condemn`]).
    pub fn is_condemned(&self) -> bool {
        self.condemned.load(Ordering::Acquire)
    }

    /// The port of the browser's DevTools endpoint on loopback, which no page may reach.
    pub fn devtools_port(&self) -> Option<u16> {
        let address = url::Url::parse(self.browser.websocket_address()).ok()?;
        address.port()
    }

    /// How many renderers the memory watchdog has killed so far.
    pub fn memory_kills(&self) -> u64 {
        self.memory_kills.load(Ordering::Acquire)
    }

    /// Resolves when the browser's connection is lost (crash, kill).
    pub async fn died(&self) {
        let mut rx = self.died.clone();
        let _ = rx.wait_for(|dead| *dead).await;
    }
}

async fn open_fresh(browser: &Browser, proxy: &str) -> Result<(BrowserContextId, Page), CdpError> {
    let params = CreateBrowserContextParams::builder()
        .proxy_server(proxy)
        // Chromium sends localhost and loopback addresses direct unless told otherwise.
        .proxy_bypass_list("<-loopback>")
        .build();
    let ctx = browser.create_browser_context(params).await?;
    let open = async {
        let deny = SetDownloadBehaviorParams::builder()
            .behavior(SetDownloadBehaviorBehavior::Deny)
            .browser_context_id(ctx.clone())
            .build()
            .map_err(CdpError::msg)?;
        let mut target = CreateTargetParams::new("about:blank");
        target.browser_context_id = Some(ctx.clone());
        // Both before anything is loaded: the tab starts blank.
        let (denied, page) = futures_util::join!(browser.execute(deny), browser.new_page(target));
        denied?;
        page
    };
    match open.await {
        Ok(page) => Ok((ctx, page)),
        Err(e) => {
            let _ = browser.dispose_browser_context(ctx).await;
            Err(e)
        }
    }
}

pub struct BrowserPool {
    settings: BrowserSettings,
    current: Mutex<Option<Arc<LiveBrowser>>>,
    retired: std::sync::Mutex<Vec<Arc<LiveBrowser>>>,
    pub launches: prometheus_client::metrics::counter::Counter,
}

/// Finds Chromium: the configured path, then `$CHROME_PATH`, then the usual names on PATH.
pub fn find_chromium(configured: Option<&Path>) -> Result<PathBuf, CaptureError> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = configured {
        candidates.push(p.to_owned());
    } else {
        if let Some(p) = std::env::var_os("CHROME_PATH") {
            candidates.push(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"] {
            for dir in std::env::split_paths(&path) {
                candidates.push(dir.join(name));
            }
        }
    }
    for c in candidates {
        if c.is_file() {
            // Debian's /usr/bin/chromium is a shell wrapper that adds flags of its own and
            // outlives a kill of the browser; use the real binary beside it.
            if c == Path::new("/usr/bin/chromium") && Path::new("/usr/lib/chromium/chromium").is_file() {
                return Ok(PathBuf::from("/usr/lib/chromium/chromium"));
            }
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    looked.dedup();
    Err(CaptureError::NoChromium { looked: looked.into_iter().take(6).collect::<Vec<_>>().join(", ") })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl BrowserPool {
    pub fn new(settings: BrowserSettings) -> Self {
        remove_stale_profiles(&settings.profile_root);
        Self {
            settings,
            current: Mutex::new(None),
            retired: std::sync::Mutex::new(Vec::new()),
            launches: Default::default(),
        }
    }

    /// Whether `b` is the browser captures are given now (not replaced, dead or condemned).
    pub async fn is_current(&self, b: &Arc<LiveBrowser>) -> bool {
        let current = self.current.lock().await;
        current.as_ref().is_some_and(|c| Arc::ptr_eq(c, b)) && b.is_alive() && !b.is_condemned()
    }

    /// The browser to capture with: the running one, or a new one if it died or is due for
    /// recycling.
    pub async fn get(&self) -> Result<Arc<LiveBrowser>, CaptureError> {
        self.reap_retired();
        let mut current = self.current.lock().await;
        if let Some(b) = current.as_ref() {
            let fresh = b.captures.fetch_add(1, Ordering::AcqRel) < self.settings.recycle_after;
            if b.is_alive() && fresh && !b.condemned.load(Ordering::Acquire) {
                return Ok(b.clone());
            }
            tracing::info!(
                alive = b.is_alive(),
                condemned = b.condemned.load(Ordering::Acquire),
                "relaunching Chromium"
            );
            let old = current.take().expect("checked");
            self.retired.lock().expect("not poisoned").push(old);
        }
        let b = Arc::new(self.launch().await?);
        b.captures.store(1, Ordering::Release);
        *current = Some(b.clone());
        Ok(b)
    }

    async fn launch(&self) -> Result<LiveBrowser, CaptureError> {
        let exe = find_chromium(self.settings.chromium_path.as_deref())?;
        let profile = tempfile::Builder::new()
            .prefix(&profile_prefix())
            .tempdir_in(&self.settings.profile_root)
            .map_err(|e| CaptureError::Launch(chromiumoxide::error::CdpError::Io(e)))?;
        write_preferences(profile.path());
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&exe)
            .new_headless_mode()
            .user_data_dir(profile.path())
            .viewport(None)
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(60))
            // chromiumoxide's defaults (puppeteer's) turn the popup blocker off; ours are
            // those, with it on: a page cannot open tabs without a person's click.
            .disable_default_args();
        // Chromium's own files stay in its profile, under the data directory, and go with it:
        // crashpad's database of crash reports went to `~/.config/chromium/Crash Reports` for
        // good, and GTK's settings cache to `~/.cache`.
        for (key, dir) in [
            ("BREAKPAD_DUMP_LOCATION", "crashes"),
            ("XDG_CONFIG_HOME", "xdg-config"),
            ("XDG_CACHE_HOME", "xdg-cache"),
        ] {
            builder = builder.env(key, profile.path().join(dir).to_string_lossy());
        }
        for (key, value) in [
            ("enable-features", "NetworkService,NetworkServiceInProcess"),
            ("disable-features", DISABLED_FEATURES),
            ("force-color-profile", "srgb"),
            ("password-store", "basic"),
            ("lang", "en_US"),
        ] {
            builder = builder.arg((key, value));
        }
        for arg in [
            "disable-background-timer-throttling",
            "disable-backgrounding-occluded-windows",
            "disable-breakpad",
            "disable-client-side-phishing-detection",
            "disable-component-extensions-with-background-pages",
            "disable-default-apps",
            "disable-dev-shm-usage",
            "disable-hang-monitor",
            "disable-ipc-flooding-protection",
            "disable-prompt-on-repost",
            "disable-renderer-backgrounding",
            "metrics-recording-only",
            "enable-automation",
            "use-mock-keychain",
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
            // Else headless Chromium opens its New Tab page and keeps it for its life: a WebUI
            // renderer and a frame of its own, about 80 MiB that no capture uses.
            "no-startup-window",
            "hide-scrollbars",
            "mute-audio",
            "disable-domain-reliability",
            "disable-quic",
        ] {
            builder = builder.arg(arg);
        }
        // Containment (docs/capture.md). Each capture's context has its own proxy; anything
        // outside those contexts goes to a port where nothing listens. WebRTC may not send UDP
        // around the proxy. The JavaScript heap is bounded below the renderer's memory limit.
        let heap_mib = ((self.settings.page_memory / 2) >> 20).max(64).to_string();
        let js_flags = format!("--max-old-space-size={heap_mib}");
        for (key, value) in [
            ("proxy-server", "http://127.0.0.1:9"),
            ("proxy-bypass-list", "<-loopback>"),
            ("force-webrtc-ip-handling-policy", "disable_non_proxied_udp"),
            ("js-flags", js_flags.as_str()),
        ] {
            builder = builder.arg((key, value));
        }
        if is_root() {
            builder = builder.no_sandbox();
        }
        let config =
            builder.build().map_err(|e| CaptureError::Launch(chromiumoxide::error::CdpError::msg(e)))?;
        let (mut browser, mut handler) = Browser::launch(config).await.map_err(CaptureError::Launch)?;
        let pid = browser.get_mut_child().and_then(|c| c.as_mut_inner().id());
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let (died_tx, died) = tokio::sync::watch::channel(false);
        // The CDP event loop must keep running whatever happens to one message: errors on
        // messages the crate does not know are logged at debug level and skipped. A lost
        // connection, though, means the browser is gone.
        tokio::spawn(
            async move {
                while let Some(event) = handler.next().await {
                    match event {
                        Err(chromiumoxide::error::CdpError::Ws(e)) => {
                            tracing::warn!(error = %e, "lost the connection to Chromium");
                            break;
                        }
                        Err(e) => tracing::debug!(error = %e, "chromium event loop"),
                        Ok(()) => {}
                    }
                }
                flag.store(false, Ordering::Release);
                let _ = died_tx.send(true);
            }
            .instrument(tracing::info_span!("chromium")),
        );
        self.launches.inc();
        let memory_kills = Arc::new(AtomicU64::new(0));
        if let Some(pid) = pid {
            tokio::spawn(watch_memory(pid, self.settings.page_memory, memory_kills.clone(), died.clone()));
        }
        tracing::info!(executable = %exe.display(), ?pid, "Chromium started");
        Ok(LiveBrowser {
            browser,
            alive,
            died,
            captures: AtomicU32::new(0),
            condemned: AtomicBool::new(false),
            memory_kills,
            _profile: profile,
        })
    }

    /// Closes retired browsers that no capture uses any more.
    fn reap_retired(&self) {
        let mut retired = self.retired.lock().expect("not poisoned");
        let mut keep = Vec::new();
        for b in retired.drain(..) {
            match Arc::try_unwrap(b) {
                Ok(live) => {
                    tokio::spawn(close(live));
                }
                Err(b) => keep.push(b),
            }
        }
        *retired = keep;
    }

    /// Closes every browser and waits for the processes to exit (no zombies).
    pub async fn shutdown(&self) {
        let current = self.current.lock().await.take();
        let retired: Vec<_> = self.retired.lock().expect("not poisoned").drain(..).collect();
        for b in current.into_iter().chain(retired) {
            match Arc::try_unwrap(b) {
                Ok(live) => close(live).await,
                Err(_) => {
                    tracing::warn!("a capture still holds the browser at shutdown; it is killed on drop")
                }
            }
        }
    }

    /// Kills the running browser's processes with SIGKILL, as a crash would (for fault tests).
    /// Returns whether a browser was running.
    pub async fn kill_current(&self) -> bool {
        let current = self.current.lock().await;
        let Some(b) = current.as_ref() else { return false };
        kill_by_profile(b._profile.path())
    }
}

/// Chromium features off in every browser: each makes requests of its own, some in a capture's
/// context and so through its proxy (out to Google where the policy allows public addresses,
/// reported as the page's refused connections where it does not): Autofill's server on a form,
/// optimization hints, the network time, translation, casting, the feed, the search engine's
/// preconnect, AI mode's eligibility check.
const DISABLED_FEATURES: &str = "AutofillServerCommunication,OptimizationHints,OptimizationHintsFetching,\
NetworkTimeServiceQuerying,Translate,TranslateUI,MediaRouter,DialMediaRouteProvider,\
InterestFeedContentSuggestions,PreconnectToSearch,AimEnabled";

/// Profile preferences no flag sets: no DNS prefetching or preconnecting (a page could look names
/// up around the proxy), and WebRTC only through the proxy.
fn write_preferences(profile: &Path) {
    let prefs = serde_json::json!({
        "net": {"network_prediction_options": 2},
        "webrtc": {"ip_handling_policy": "disable_non_proxied_udp", "multiple_routes_enabled": false,
                   "nonproxied_udp_enabled": false},
    });
    let dir = profile.join("Default");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("Preferences"), prefs.to_string()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the browser profile's preferences");
    }
}

/// How often renderer memory is looked at.
const MEMORY_WATCH: Duration = Duration::from_millis(200);

/// Kills any renderer process of the browser `pid` whose resident memory passes `limit`: the
/// page's tab crashes and its capture fails with `page_memory_exceeded`. A page can allocate
/// for at most one interval before it is seen (documented in docs/capture.md).
async fn watch_memory(
    pid: u32,
    limit: u64,
    kills: Arc<AtomicU64>,
    mut died: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = died.wait_for(|dead| *dead) => return,
            () = tokio::time::sleep(MEMORY_WATCH) => {}
        }
        let over = tokio::task::spawn_blocking(move || renderers_over(pid, limit)).await.unwrap_or_default();
        for (renderer, rss) in over {
            if rustix::process::kill_process(renderer, rustix::process::Signal::KILL).is_ok() {
                kills.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(
                    renderer = renderer.as_raw_nonzero().get(),
                    rss,
                    limit,
                    "killed a page's renderer over capture.page_memory"
                );
            }
        }
    }
}

/// Renderer processes descending from `root` with more than `limit` bytes resident.
fn renderers_over(root: u32, limit: u64) -> Vec<(rustix::process::Pid, u64)> {
    let page = rustix::param::page_size() as u64;
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    let cmdlines: std::collections::HashMap<u32, Vec<u8>> = tree
        .iter()
        .filter_map(|&pid| Some((pid, std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)))
        .collect();
    let parent = |pid: u32| parents.iter().find(|(p, _)| *p == pid).map(|(_, pp)| *pp);
    let mut out = Vec::new();
    for pid in tree.into_iter().skip(1) {
        let Some(cmdline) = cmdlines.get(&pid) else { continue };
        let pp = parent(pid).unwrap_or(0);
        let of_parent = cmdlines.get(&pp).map_or(&[][..], Vec::as_slice);
        if !is_renderer(cmdline, of_parent, || is_namespace_init(pp)) {
            continue;
        }
        let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32).filter(|_| rss > limit) {
            out.push((p, rss));
        }
    }
    out
}

/// Whether a process of the browser's tree is a renderer, from its command line and its
/// parent's. A zygote's child rewrites its title (the arguments may then be one string with
/// spaces) when it can; when it cannot (a `GLIBC_TUNABLES` inherited, for one), a renderer keeps
/// the name of the zygote that forked it, the sandboxed one. With the namespace sandbox (not as
/// root) that zygote is itself the child of a zygote, the namespace's init: it is not a renderer.
/// `parent_is_namespace_init` is asked last, only of a process that kept a zygote's name.
fn is_renderer(cmdline: &[u8], parent: &[u8], parent_is_namespace_init: impl FnOnce() -> bool) -> bool {
    let has = |c: &[u8], arg: &[u8]| c.windows(arg.len()).any(|w| w == arg);
    has(cmdline, b"--type=renderer")
        || (has(cmdline, b"--type=zygote")
            && !has(cmdline, b"--no-zygote-sandbox")
            && has(parent, b"--type=zygote")
            && !parent_is_namespace_init())
}

/// Whether `pid` is process 1 of a PID namespace of its own (the last `NSpid:` of its status).
fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|ids| ids.split_whitespace().last())
            == Some("1")
    })
}

async fn close(mut live: LiveBrowser) {
    let _ = tokio::time::timeout(Duration::from_secs(5), live.browser.close()).await;
    if tokio::time::timeout(Duration::from_secs(5), live.browser.wait()).await.is_err() {
        let _ = live.browser.kill().await;
        let _ = live.browser.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderers_are_told_by_name_or_by_the_zygote_that_forked_them() {
        let browser = b"/usr/lib/chromium/chromium --headless=new --user-data-dir=/d".as_slice();
        let zygote = b"/usr/lib/chromium/chromium --type=zygote --no-sandbox --headless=new".as_slice();
        let unsandboxed =
            b"/usr/lib/chromium/chromium --type=zygote --no-zygote-sandbox --no-sandbox".as_slice();
        let renamed = b"/usr/lib/chromium/chromium --type=renderer --renderer-client-id=7".as_slice();
        assert!(is_renderer(renamed, zygote, || false), "a renderer that renamed itself");
        assert!(is_renderer(zygote, zygote, || false), "a renderer that kept the zygote's name");
        assert!(!is_renderer(zygote, browser, || false), "the zygote, a child of the browser");
        assert!(!is_renderer(zygote, zygote, || true), "the zygote under the namespace sandbox's init");
        assert!(!is_renderer(unsandboxed, unsandboxed, || false), "the GPU process, unnamed");
        assert!(!is_renderer(b"chromium --type=gpu-process", unsandboxed, || false), "the GPU process");
        assert!(!is_renderer(b"chromium --type=utility --utility-sub-type=network", browser, || false));
    }
}
