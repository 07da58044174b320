//! How long validating a large config takes: 10,000 monitors with defaults, several viewports,
//! masks and headers each. Run: `cargo bench --bench config`.

use criterion::{Criterion, criterion_group, criterion_main};

fn generated_config(monitors: usize) -> String {
    let mut yaml = String::from(
        "defaults:\n  schedule: \"*/15 * * * *\"\n  viewports: [1280x800, {width: 390, height: 844, scale: 3, mobile: true}]\n  threshold: 0.5%\n  hide: [\".cookie-banner\"]\nmonitors:\n",
    );
    for i in 0..monitors {
        yaml.push_str(&format!(
            "  - name: site-{i}\n    url: https://example.com/page/{i}?lang=en\n    schedule: \"{} */2 * * *\"\n    mask: [\"#clock\", {{x: 0, y: 0, width: 120, height: 40}}]\n    headers: {{Authorization: \"Bearer ${{TOKEN:-t}}\"}}\n    max_diff_pixels: {}\n",
            i % 60,
            100 + i
        ));
    }
    yaml
}

fn bench(c: &mut Criterion) {
    let yaml = generated_config(10_000);
    let env = |_: &str| None;
    let config = vigil::config::parse(&yaml, "bench.yaml", &env).expect("valid");
    assert_eq!(config.monitors.len(), 10_000);
    let mut group = c.benchmark_group("config");
    group.sample_size(10);
    group.bench_function("parse_and_validate_10000_monitors", |b| {
        b.iter(|| vigil::config::parse(std::hint::black_box(&yaml), "bench.yaml", &env).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
