//! Latency-by-percentile plots as self-contained SVG (no fonts, scripts or external files).
//!
//! The x axis is in "nines": x = −log10(1 − p), so 0 is the median's left end (p0), 1 is p90,
//! 2 is p99, 3 is p99.9 … — the tail gets as much room as the body, as in HdrHistogram's
//! plotter. The y axis is latency on a log scale. Each series (operation type) is one
//! `<path>`; axes, grid and legend use other elements, so a reader can count series by paths.
//! A series stops at the percentile its sample count supports (1 − 1/count), capped at six
//! nines.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 190.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 60.0;
/// Deepest percentile plotted: 99.9999%.
const NINES_MAX: f64 = 6.0;
/// Resolution of each series along x, in nines.
const STEP_NINES: f64 = 0.02;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// An SVG plot of latency (log y) against percentile (log "nines" x) for each named
/// histogram of nanosecond latencies. Empty histograms are skipped.
pub fn latency_percentile_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    let series: Vec<(&str, &Histogram<u64>)> = series
        .iter()
        .copied()
        .filter(|(_, h)| !h.is_empty())
        .collect();
    let mut svg = String::with_capacity(16 * 1024);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        MARGIN_LEFT + plot_width() / 2.0,
        escape(title)
    );

    let x_max = series
        .iter()
        .map(|(_, h)| supported_nines(h).ceil())
        .fold(1.0, f64::max);
    let lowest_us = series
        .iter()
        .map(|(_, h)| ns_to_us(h.min()))
        .fold(f64::INFINITY, f64::min);
    let highest_us = series
        .iter()
        .map(|(_, h)| ns_to_us(h.max()))
        .fold(0.0, f64::max);
    let (y_lo, y_hi) = if series.is_empty() {
        (0.0, 3.0)
    } else {
        let lo = lowest_us.max(0.01).log10().floor();
        let hi = highest_us.max(0.01).log10().ceil();
        (lo, if hi > lo { hi } else { lo + 1.0 })
    };
    let scale = Scale { x_max, y_lo, y_hi };

    draw_axes(&mut svg, &scale);
    for (i, (name, h)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        draw_series(&mut svg, &scale, h, color);
        draw_legend_entry(&mut svg, i, name, h, color);
    }
    svg.push_str("</svg>\n");
    svg
}

struct Scale {
    x_max: f64,
    /// Decades: 10^y_lo µs at the bottom, 10^y_hi µs at the top.
    y_lo: f64,
    y_hi: f64,
}

impl Scale {
    fn x(&self, nines: f64) -> f64 {
        MARGIN_LEFT + nines / self.x_max * plot_width()
    }

    fn y(&self, us: f64) -> f64 {
        let v = us.max(10f64.powf(self.y_lo)).log10();
        MARGIN_TOP + plot_height() - (v - self.y_lo) / (self.y_hi - self.y_lo) * plot_height()
    }
}

fn plot_width() -> f64 {
    WIDTH - MARGIN_LEFT - MARGIN_RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
}

fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The deepest percentile, in nines, that `h`'s sample count can speak for.
fn supported_nines(h: &Histogram<u64>) -> f64 {
    (h.len().max(1) as f64).log10().clamp(0.0, NINES_MAX)
}

fn draw_axes(svg: &mut String, s: &Scale) {
    let (left, right) = (MARGIN_LEFT, MARGIN_LEFT + plot_width());
    let (top, bottom) = (MARGIN_TOP, MARGIN_TOP + plot_height());
    let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
    for nines in 0..=s.x_max as u32 {
        let x = s.x(f64::from(nines));
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}"/>"#
        );
    }
    for decade in s.y_lo as i32..=s.y_hi as i32 {
        let y = s.y(10f64.powi(decade));
        let _ = writeln!(
            svg,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}"/>"#
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"#,
        plot_width(),
        plot_height()
    );
    for nines in 0..=s.x_max as u32 {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            s.x(f64::from(nines)),
            bottom + 18.0,
            percentile_label(nines)
        );
    }
    for decade in s.y_lo as i32..=s.y_hi as i32 {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            s.y(10f64.powi(decade)) + 4.0,
            latency_label(decade)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        left + plot_width() / 2.0,
        bottom + 40.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency</text>"#,
        top + plot_height() / 2.0,
        top + plot_height() / 2.0
    );
}

/// "0%", "90%", "99%", "99.9%", …
fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// 10^decade µs as "1 us", "10 us", "100 us", "1 ms", …, "10 s".
fn latency_label(decade: i32) -> String {
    let us = 10f64.powi(decade);
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else {
        format!("{us} us")
    }
}

fn draw_series(svg: &mut String, s: &Scale, h: &Histogram<u64>, color: &str) {
    let end = supported_nines(h).min(s.x_max);
    let mut d = String::with_capacity(8 * 1024);
    let steps = (end / STEP_NINES).floor() as u32;
    for i in 0..=steps {
        let nines = f64::from(i) * STEP_NINES;
        let quantile = 1.0 - 10f64.powf(-nines);
        let us = ns_to_us(h.value_at_quantile(quantile));
        let cmd = if i == 0 { 'M' } else { 'L' };
        let _ = write!(d, "{cmd}{:.1},{:.1} ", s.x(nines), s.y(us));
    }
    // The maximum, at the percentile of the last sample.
    let _ = write!(d, "L{:.1},{:.1}", s.x(end), s.y(ns_to_us(h.max())));
    let _ = writeln!(
        svg,
        r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>"#
    );
}

fn draw_legend_entry(svg: &mut String, i: usize, name: &str, h: &Histogram<u64>, color: &str) {
    let x = MARGIN_LEFT + plot_width() + 16.0;
    let y = MARGIN_TOP + 14.0 + 36.0 * i as f64;
    let _ = writeln!(
        svg,
        r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/>"#,
        x + 24.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
        x + 30.0,
        y + 4.0,
        escape(name)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#555555">p50 {:.1} us, p99 {:.1} us</text>"##,
        x + 30.0,
        y + 18.0,
        ns_to_us(h.value_at_quantile(0.5)),
        ns_to_us(h.value_at_quantile(0.99))
    );
}

/// XML text/attribute escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(1), "90%");
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(3), "99.9%");
        assert_eq!(percentile_label(5), "99.999%");
        assert_eq!(latency_label(0), "1 us");
        assert_eq!(latency_label(2), "100 us");
        assert_eq!(latency_label(3), "1 ms");
        assert_eq!(latency_label(7), "10 s");
        assert_eq!(latency_label(-1), "0.1 us");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"a<b & "c">'"#),
            "a&lt;b &amp; &quot;c&quot;&gt;&apos;"
        );
    }

    #[test]
    fn one_path_per_non_empty_series_and_points_inside_the_plot() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let b = a.clone();
        for v in 1..=10_000u64 {
            a.record(v * 1000).unwrap();
        }
        let svg = latency_percentile_svg("t <x>", &[("GET", &a), ("SET", &b)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains("t &lt;x&gt;"));
        let d = svg.split(r#"<path d=""#).nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        for point in d.split(['M', 'L']).filter(|p| !p.trim().is_empty()) {
            let (x, y) = point.trim().split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (MARGIN_LEFT..=MARGIN_LEFT + plot_width() + 0.1).contains(&x),
                "{x}"
            );
            assert!(
                (MARGIN_TOP - 0.1..=MARGIN_TOP + plot_height() + 0.1).contains(&y),
                "{y}"
            );
        }
    }
}
