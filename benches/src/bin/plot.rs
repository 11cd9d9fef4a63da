//! Draws verify time per store and path as a grouped bar chart (log scale) from criterion's
//! results, into `benches/verify.png`; with `--table`, prints every benchmark's median as a
//! Markdown table instead.
//!
//! ```text
//! cargo bench -p keyward-benches            # writes target/criterion/**
//! cargo run -p keyward-benches --bin plot   # draws benches/verify.png
//! cargo run -p keyward-benches --bin plot -- --table
//! ```
//!
//! Options: `--criterion-dir DIR` (default `$CARGO_TARGET_DIR/criterion`, else the
//! workspace's `target/criterion`), `--out FILE` (default `benches/verify.png`), `--font TTF`
//! (default DejaVu Sans).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use keyward_benches::DEFAULT_FONT;

/// The verify paths drawn, in order, with their axis labels.
const PATHS: &[(&str, &str)] = &[
    ("malformed", "malformed"),
    ("bad_checksum", "bad checksum"),
    ("verify_warm", "warm"),
    ("wrong_secret_cached", "wrong secret, cached id"),
    ("rate_limited", "rate limited"),
    ("verify_expired", "expired entry (store read)"),
    ("verify_cold", "cold"),
    ("wrong_secret_uncached", "wrong secret, uncached id"),
    ("unknown_id", "unknown id"),
];

/// Targets drawn as dashed lines: (ns, label).
const TARGETS: &[(f64, &str)] = &[
    (1_000.0, "target: warm verify on memory ≤ 1 µs"),
    (200.0, "target: malformed / bad checksum ≤ 200 ns"),
];

const STORES: &[(&str, RGBColor)] = &[
    ("memory", RGBColor(0x4c, 0x72, 0xb0)),
    ("sqlite", RGBColor(0xdd, 0x84, 0x52)),
    ("postgres", RGBColor(0x55, 0xa8, 0x68)),
];

/// One criterion result.
struct Estimate {
    /// Median time per iteration, ns.
    median_ns: f64,
    /// Elements per iteration, when a throughput was set.
    elements: Option<u64>,
}

struct Args {
    criterion_dir: PathBuf,
    out: PathBuf,
    font: PathBuf,
    table: bool,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let mut args = Args {
        criterion_dir: target.join("criterion"),
        out: manifest.join("verify.png"),
        font: PathBuf::from(DEFAULT_FONT),
        table: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--criterion-dir" => args.criterion_dir = value()?.into(),
            "--out" => args.out = value()?.into(),
            "--font" => args.font = value()?.into(),
            "--table" => args.table = true,
            other => return Err(format!("unknown argument {other:?} (see the doc comment)").into()),
        }
    }
    Ok(args)
}

/// Every `<id>/new/estimates.json` under `dir`, keyed by the benchmark id (`group/function`).
fn read_estimates(dir: &Path) -> Result<BTreeMap<String, Estimate>, Box<dyn Error>> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, Estimate>,
    ) -> Result<(), Box<dyn Error>> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "report" {
                continue;
            }
            if name == "new" {
                let estimates = path.join("estimates.json");
                if estimates.is_file() {
                    let id = dir.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
                    out.insert(id, read_one(&path)?);
                }
                continue;
            }
            walk(root, &path, out)?;
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out).map_err(|e| {
        format!(
            "cannot read criterion results in {}: {e} (run `cargo bench -p keyward-benches` first)",
            dir.display()
        )
    })?;
    Ok(out)
}

fn read_one(new: &Path) -> Result<Estimate, Box<dyn Error>> {
    let text = std::fs::read_to_string(new.join("estimates.json"))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let median_ns = v["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("no median in {}", new.display()))?;
    let elements = std::fs::read_to_string(new.join("benchmark.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|b| b["throughput"]["Elements"].as_u64());
    Ok(Estimate {
        median_ns,
        elements,
    })
}

/// A time in ns with a fitting unit, 3 significant digits.
fn human(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

fn print_table(estimates: &BTreeMap<String, Estimate>) {
    println!("| benchmark | median | throughput |");
    println!("|---|---:|---:|");
    for (id, e) in estimates {
        let throughput = e.elements.map_or(String::new(), |n| {
            let per_sec = n as f64 / (e.median_ns / 1e9);
            format!("{:.2} M/s", per_sec / 1e6)
        });
        println!("| `{id}` | {} | {throughput} |", human(e.median_ns));
    }
}

fn draw(estimates: &BTreeMap<String, Estimate>, out: &Path) -> Result<(), Box<dyn Error>> {
    let stores: Vec<(&str, RGBColor)> = STORES
        .iter()
        .copied()
        .filter(|(s, _)| {
            PATHS
                .iter()
                .any(|(p, _)| estimates.contains_key(&format!("{s}/{p}")))
        })
        .collect();
    if stores.is_empty() {
        return Err("no verify results found (run `cargo bench -p keyward-benches` first)".into());
    }
    let values: Vec<f64> = stores
        .iter()
        .flat_map(|(s, _)| PATHS.iter().map(move |(p, _)| format!("{s}/{p}")))
        .filter_map(|id| estimates.get(&id).map(|e| e.median_ns))
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let y_min = 10f64.powf((lo / 2.0).log10().floor()).max(1.0);
    let y_max = 10f64.powf((hi * 1.5).log10().ceil());

    let root = BitMapBackend::new(out, (1400, 740)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = PATHS.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Keyward: verify time per store and path (median, log scale)",
            ("sans-serif", 28),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(PATHS.len() + 1)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| human(*v))
        .y_label_style(("sans-serif", 16))
        .y_desc("time per verify")
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let width = 0.8 / stores.len() as f64;
    for (s, (store, color)) in stores.iter().enumerate() {
        let bars: Vec<(f64, f64)> = PATHS
            .iter()
            .enumerate()
            .filter_map(|(i, (path, _))| {
                estimates
                    .get(&format!("{store}/{path}"))
                    .map(|e| (i as f64 + 0.1 + s as f64 * width, e.median_ns))
            })
            .collect();
        let color = *color;
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                Rectangle::new([(x, y_min), (x + width * 0.92, v)], color.filled())
            }))?
            .label(*store)
            .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], color.filled()));
        chart.draw_series(bars.iter().map(|&(x, v)| {
            Text::new(
                human(v),
                (x, v * 1.25),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))?;
    }
    // The targets of issue 5, as dashed lines.
    for (value, label) in TARGETS {
        if *value > y_min && *value < y_max {
            let dashes = (0..(n * 40.0) as usize).step_by(2).map(|i| {
                let x = i as f64 / 40.0;
                PathElement::new(
                    vec![(x, *value), (x + 0.025, *value)],
                    BLACK.stroke_width(1),
                )
            });
            chart.draw_series(dashes)?.label(*label).legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1))
            });
        }
    }
    // Path names under each group (drawn on the root area, below the plot).
    for (i, (_, label)) in PATHS.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, y_min));
        root.draw(&Text::new(
            *label,
            (px, py + 12),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let estimates = read_estimates(&args.criterion_dir)?;
    if args.table {
        print_table(&estimates);
        return Ok(());
    }
    keyward_benches::register_font(&args.font)?;
    draw(&estimates, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("plot: {e}");
        std::process::exit(1);
    }
}
