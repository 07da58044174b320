//! `vigil diff A.png B.png`: compare two PNGs as the daemon does, from the command line.
//! Exit status: 0 within the limits given, 1 over them, 2 on error.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::diff::{DiffOptions, DiffReport, Limits, Metric, Region, compare_png, text};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The baseline (pixelmatch's img1).
    pub baseline: PathBuf,
    /// The new capture (img2).
    pub current: PathBuf,
    /// Write the diff image here (only when something differs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-pixel colour sensitivity, 0 (exact) to 1; its scale depends on --metric.
    #[arg(long, default_value_t = 0.1, value_parser = unit_interval)]
    pub threshold: f64,
    /// oklab: pixelmatch 8 (default); yiq: pixelmatch 7, for thresholds tuned on older tools.
    #[arg(long, value_enum, default_value_t = MetricArg::Oklab)]
    pub metric: MetricArg,
    /// Count anti-aliased pixels as differences.
    #[arg(long)]
    pub include_aa: bool,
    /// Exclude a rectangle from the comparison: x,y,width,height (repeatable).
    #[arg(long = "mask", value_parser = parse_mask)]
    pub masks: Vec<Region>,
    /// Fail (exit 1) when more pixels than this differ.
    #[arg(long)]
    pub max_diff_pixels: Option<u64>,
    /// Fail (exit 1) when the share of differing pixels exceeds this (0.02 = 2 %).
    #[arg(long, value_parser = unit_interval)]
    pub max_diff_ratio: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MetricArg {
    Oklab,
    Yiq,
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1 (got \"{s}\")")),
    }
}

fn parse_mask(s: &str) -> Result<Region, String> {
    let parts: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected x,y,width,height in pixels (got \"{s}\")"))?;
    match parts[..] {
        [x, y, width, height] if width > 0 && height > 0 => Ok(Region { x, y, width, height }),
        _ => Err(format!("expected x,y,width,height with a positive width and height (got \"{s}\")")),
    }
}

/// Over the limits? With no limit given, any difference is over.
fn over(report: &DiffReport, args: &DiffArgs) -> bool {
    match (args.max_diff_pixels, args.max_diff_ratio) {
        (None, None) => report.diff_pixels > 0,
        (pixels, ratio) => {
            pixels.is_some_and(|m| report.diff_pixels > m) || ratio.is_some_and(|r| report.diff_ratio > r)
        }
    }
}

pub fn run(args: &DiffArgs) -> ExitCode {
    match compare(args) {
        Ok(over) => ExitCode::from(u8::from(over)),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn compare(args: &DiffArgs) -> Result<bool, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let (a, b) = (read(&args.baseline)?, read(&args.current)?);
    let options = DiffOptions {
        threshold: args.threshold,
        include_aa: args.include_aa,
        metric: match args.metric {
            MetricArg::Oklab => Metric::Oklab,
            MetricArg::Yiq => Metric::Yiq,
        },
        masks: args.masks.clone(),
        ..DiffOptions::default()
    };
    let (report, diff_png) = compare_png(&a, &b, &options, &Limits::default(), args.out.is_some())
        .map_err(|e| format!("{e} ({})", e.code()))?;
    // Captures of vigil's engine carry their words: say what they say changed.
    let words = match (text::extract(&a), text::extract(&b)) {
        (Some(before), Some(after)) => text::compare(&report.regions, &options.masks, &before, &after),
        _ => Vec::new(),
    };
    if let (Some(out), Some(png)) = (&args.out, &diff_png) {
        std::fs::write(out, png).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let over = over(&report, args);
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("a report serialises"));
    } else {
        print_summary(&report, &words, args, over, diff_png.is_some());
    }
    Ok(over)
}

fn print_summary(r: &DiffReport, words: &[text::RegionChange], args: &DiffArgs, over: bool, wrote: bool) {
    println!(
        "{} of {} pixels differ ({:.4}%){}",
        r.diff_pixels,
        r.total_pixels,
        r.diff_ratio * 100.0,
        if over { " — over the limit" } else { "" }
    );
    if r.size_changed {
        println!(
            "size changed: {}x{} -> {}x{} (compared on {}x{}; the area in only one image counts as changed)",
            r.baseline_size.width,
            r.baseline_size.height,
            r.current_size.width,
            r.current_size.height,
            r.width,
            r.height
        );
    }
    for g in r.regions.iter().take(10) {
        let said =
            words.iter().find(|c| c.region == *g).map(|c| format!(": {}", c.said(200))).unwrap_or_default();
        println!("  changed region: x={} y={} {}x{}{said}", g.x, g.y, g.width, g.height);
    }
    if r.regions.len() > 10 {
        println!("  … and {} more regions", r.regions.len() - 10);
    }
    if let (Some(out), true) = (&args.out, wrote) {
        println!("diff image: {}", out.display());
    }
}
