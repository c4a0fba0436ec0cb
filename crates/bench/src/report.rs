//! Presenting results: latency summaries from HDR histograms, medians over
//! repeated runs, a plain-text table for people and JSON lines for scripts.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, from 1 µs to 5 minutes at three
/// significant digits (0.1 % error), which covers any step plus its drain.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

/// Records `micros`, saturating at the histogram's upper bound rather than
/// dropping a sample that is off the scale.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency { p50: ms(0.5), p99: ms(0.99), p999: ms(0.999), max: h.max() as f64 / 1000.0 }
    }

    /// Field-by-field median over runs.
    pub fn median(all: &[Latency]) -> Latency {
        Latency {
            p50: median(all.iter().map(|l| l.p50)),
            p99: median(all.iter().map(|l| l.p99)),
            p999: median(all.iter().map(|l| l.p999)),
            max: median(all.iter().map(|l| l.max)),
        }
    }
}

/// The median of some numbers (the lower middle one for an even count, so
/// the result is always a value that was actually measured); 0 when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// Prints `rows` under `headers`, columns right-aligned to their widest cell.
pub fn print_table(title: &str, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    println!("\n{title}");
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints one JSON object per line.
pub fn print_json<T: Serialize>(items: &[T]) {
    println!();
    for item in items {
        match serde_json::to_string(item) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode a result as JSON: {e}"),
        }
    }
}

/// `x` with `digits` decimals, for table cells.
pub fn fixed(x: f64, digits: usize) -> String {
    format!("{x:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_picks_a_measured_value() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.0);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn latency_percentiles_are_in_milliseconds() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert!((l.p50 - 0.5).abs() < 0.01, "{l:?}");
        assert!((l.max - 1.0).abs() < 0.01, "{l:?}");
    }
}
