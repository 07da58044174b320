//! `vigil capture URL -o out.png`: a one-off capture with the daemon's engine, with timings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::capture::browser::{BrowserPool, BrowserSettings};
use crate::capture::request::{CaptureRequest, FormatReq, ViewportReq, WaitUntilReq};

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// The page to capture (http or https).
    pub url: String,
    /// Where to write the PNG or PDF.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Browser window size in CSS pixels.
    #[arg(long, default_value = "1280x800", value_parser = parse_viewport)]
    pub viewport: (u32, u32),
    /// Device scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Capture the whole page height (up to --max-height).
    #[arg(long)]
    pub full_page: bool,
    #[arg(long, default_value_t = 16_384)]
    pub max_height: u32,
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    pub format: FormatArg,
    /// Wait until this CSS selector matches before capturing.
    #[arg(long)]
    pub wait_for: Option<String>,
    #[arg(long, value_enum, default_value_t = WaitArg::Load)]
    pub wait_until: WaitArg,
    /// Chromium binary (default: $CHROME_PATH, then chromium… on PATH).
    #[arg(long)]
    pub chromium: Option<PathBuf>,
    /// Record the page's words in the PNG, as the daemon's monitors do: `vigil diff` then says
    /// what they say changed.
    #[arg(long)]
    pub text: bool,
    /// Also print where the time went: opening the tab, emulation, loading, settling, the
    /// screenshots (and how many), closing (milliseconds).
    #[arg(long)]
    pub timings: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Png,
    Pdf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WaitArg {
    Load,
    Domcontentloaded,
    Networkidle,
}

fn parse_viewport(s: &str) -> Result<(u32, u32), String> {
    s.split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| format!("expected WIDTHxHEIGHT like 1280x800 (got \"{s}\")"))
}

pub fn run(args: &CaptureArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    match runtime.block_on(capture(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn capture(args: &CaptureArgs) -> Result<(), String> {
    let req = CaptureRequest {
        url: args.url.clone(),
        format: Some(match args.format {
            FormatArg::Png => FormatReq::Png,
            FormatArg::Pdf => FormatReq::Pdf,
        }),
        full_page: Some(args.full_page),
        viewport: Some(ViewportReq {
            width: args.viewport.0,
            height: args.viewport.1,
            scale: args.scale,
            mobile: false,
        }),
        wait_until: Some(match args.wait_until {
            WaitArg::Load => WaitUntilReq::Load,
            WaitArg::Domcontentloaded => WaitUntilReq::Domcontentloaded,
            WaitArg::Networkidle => WaitUntilReq::Networkidle,
        }),
        wait_for: args.wait_for.clone(),
        max_height: Some(args.max_height),
        text: Some(args.text),
        ..CaptureRequest::default()
    };
    let spec = req.validate().map_err(|e| e.to_string())?;
    let profiles = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let pool = BrowserPool::new(BrowserSettings {
        chromium_path: args.chromium.clone(),
        profile_root: profiles.path().to_owned(),
        recycle_after: u32::MAX,
        page_memory: 1 << 30,
    });
    let start = Instant::now();
    let live = pool.get().await.map_err(|e| e.to_string())?;
    let launched = start.elapsed();
    let shot = Instant::now();
    // The person at the keyboard chose the URL: private addresses are theirs to capture, but
    // the page's connections still go through the proxy, and metadata addresses stay refused.
    let everywhere: Vec<ipnet::IpNet> =
        vec!["0.0.0.0/0".parse().expect("valid"), "::/0".parse().expect("valid")];
    let limits = crate::capture::engine::Containment {
        policy: crate::capture::egress::Policy::system(&everywhere),
        max_pixels: 500_000_000,
        deadline: spec.timeout + std::time::Duration::from_secs(30),
    };
    let result =
        crate::capture::engine::capture(&live, &spec, std::time::Duration::from_secs(5), &limits, None).await;
    let took = shot.elapsed();
    drop(live);
    pool.shutdown().await;
    let out = result.map_err(|f| format!("{} ({})", f.error, f.error.code()))?;
    std::fs::write(&args.output, &out.bytes)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    let size = match (out.width, out.height) {
        (Some(w), Some(h)) => format!("{w}x{h} "),
        _ => String::new(),
    };
    println!(
        "captured {size}{} ({} bytes) in {:.2} s (browser start {:.2} s){}{} -> {}",
        out.content_type,
        out.bytes.len(),
        took.as_secs_f64(),
        launched.as_secs_f64(),
        if out.stable == Some(false) { ", not stable" } else { "" },
        if out.clipped { ", clipped at max height" } else { "" },
        args.output.display()
    );
    if args.timings {
        let t = &out.timings;
        println!(
            "timings (ms): browser start {}, open {}, emulate {}, load {}, settle {}, shoot {} ({} shot{}{}), close {}",
            launched.as_millis(),
            t.open,
            t.emulate,
            t.load,
            t.settle,
            t.shoot,
            t.shots,
            if t.shots == 1 { "" } else { "s" },
            if args.text { format!(", words {}", t.words) } else { String::new() },
            t.close
        );
    }
    Ok(())
}
