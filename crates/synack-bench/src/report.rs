//! The results table: what each row measures, the medians, the ratios, and the section of
//! BENCHMARKS.md that the harness owns.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// The markers around the harness's section of BENCHMARKS.md; the rest of the file belongs to
/// other people (the criterion benches) and is kept byte for byte.
pub const BEGIN: &str = "<!-- harness:begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- harness:end -->";

/// One measurement of one implementation (a median over its repetitions).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A value in the row's unit; `intact` says every byte was checked and right.
    Value { value: f64, intact: bool },
    /// The run hit its timeout; the rate of what it delivered by then (not shown).
    TimedOut { value: f64 },
    /// The measurement failed; why.
    Failed(String),
    /// Not measured for this implementation.
    NotMeasured,
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value { value, .. } => Some(*value),
            _ => None,
        }
    }

    pub(crate) fn show(&self) -> String {
        match self {
            Cell::Value { value, intact } => {
                let mark = if *intact { "" } else { " CORRUPT" };
                format!("{}{mark}", fmt_num(*value))
            }
            // For stack → kernel only the server's final count proves delivery, so a timed-out
            // upload has no rate to show; say only that it did not finish.
            Cell::TimedOut { .. } => "timeout".into(),
            Cell::Failed(_) => "FAILED".into(),
            Cell::NotMeasured => "—".into(),
        }
    }

    /// Whether this cell makes the run fail: an error, or data that arrived wrong.
    pub fn is_failure(&self) -> bool {
        matches!(self, Cell::Failed(_) | Cell::Value { intact: false, .. })
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The median of `v` (the upper one of an even count), if any: how every cell of the
/// harness sums up its repetitions.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

pub(crate) fn ratio(a: &Cell, b: &Cell) -> String {
    match (a.value(), b.value()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// A row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub name: String,
    /// The unit of the cells.
    pub unit: &'static str,
    /// synack over TUN.
    pub synack: Cell,
    /// smoltcp over TUN.
    pub smoltcp: Cell,
    /// The kernel on both ends, over veth.
    pub kernel: Cell,
}

impl Row {
    /// A row with nothing measured yet.
    pub fn new(name: impl Into<String>, unit: &'static str) -> Row {
        Row {
            name: name.into(),
            unit,
            synack: Cell::NotMeasured,
            smoltcp: Cell::NotMeasured,
            kernel: Cell::NotMeasured,
        }
    }

    /// Every failure in this row, as `name (impl): why`.
    pub fn failures(&self) -> Vec<String> {
        [
            ("synack", &self.synack),
            ("smoltcp", &self.smoltcp),
            ("kernel", &self.kernel),
        ]
        .into_iter()
        .filter(|(_, c)| c.is_failure())
        .map(|(who, c)| match c {
            Cell::Failed(why) => format!("{} ({who}): {why}", self.name),
            _ => format!("{} ({who}): data corrupted", self.name),
        })
        .collect()
    }
}

/// A row of the HTTP table: requests per second from wrk.
#[derive(Debug, Clone)]
pub struct HttpRow {
    /// What is measured.
    pub name: String,
    /// The `http_server` example on synack over a TUN, with one worker (`--workers 1`).
    pub synack_1: Cell,
    /// The same with two workers (`--workers 2`): the default on a 2-core machine.
    pub synack: Cell,
    /// The server's CPU time a request (µs, user + system) with one worker, and with two.
    pub cpu_us: [Option<f64>; 2],
    /// The same for the `--kernel` server (hyper on the kernel's TCP). Not like for like:
    /// the kernel runs its TCP receive in whichever process sent the packet (wrk's sends
    /// charge the server's receive path to wrk), where synack's server runs all of its TCP.
    pub hyper_cpu_us: Option<f64>,
    /// The same example on the kernel's TCP (`--kernel`), over veth.
    pub hyper: Cell,
    /// nginx with one worker, over veth.
    pub nginx: Cell,
}

impl HttpRow {
    /// A row with nothing measured yet.
    pub fn new(name: impl Into<String>) -> HttpRow {
        HttpRow {
            name: name.into(),
            synack_1: Cell::NotMeasured,
            synack: Cell::NotMeasured,
            cpu_us: [None; 2],
            hyper_cpu_us: None,
            hyper: Cell::NotMeasured,
            nginx: Cell::NotMeasured,
        }
    }

    /// Every failure in this row, as `name (who): why`.
    pub fn failures(&self) -> Vec<String> {
        [
            ("synack, 1 worker", &self.synack_1),
            ("synack, 2 workers", &self.synack),
            ("hyper on the kernel", &self.hyper),
            ("nginx", &self.nginx),
        ]
        .into_iter()
        .filter_map(|(who, c)| match c {
            Cell::Failed(why) => Some(format!("{} ({who}): {why}", self.name)),
            _ => None,
        })
        .collect()
    }

    /// The CPU cell: `µs with 1 → µs with 2 (ratio)`.
    fn cpu(&self) -> String {
        match self.cpu_us {
            [Some(one), Some(two)] if one > 0.0 => {
                format!("{one:.0} → {two:.0} µs ({:.2}×)", two / one)
            }
            _ => "—".into(),
        }
    }

    /// The kernel server's CPU cell.
    fn hyper_cpu(&self) -> String {
        self.hyper_cpu_us
            .map_or_else(|| "—".into(), |us| format!("{us:.0} µs"))
    }
}

/// A row of the workers table: synack on the offload TUN with one worker and with two.
#[derive(Debug, Clone)]
pub struct WorkersRow {
    /// What is measured.
    pub name: String,
    /// The unit of the two cells.
    pub unit: &'static str,
    /// With one worker, and with two.
    pub cells: [Cell; 2],
    /// The harness process's CPU time (user + system, every thread) per GiB moved, in
    /// milliseconds, with one worker and with two.
    pub cpu_ms_per_gib: [Option<f64>; 2],
}

impl WorkersRow {
    /// A row with nothing measured yet.
    pub fn new(name: impl Into<String>, unit: &'static str) -> WorkersRow {
        WorkersRow {
            name: name.into(),
            unit,
            cells: [Cell::NotMeasured, Cell::NotMeasured],
            cpu_ms_per_gib: [None; 2],
        }
    }

    /// Every failure in this row, as `name (who): why`.
    pub fn failures(&self) -> Vec<String> {
        ["1 worker", "2 workers"]
            .into_iter()
            .zip(&self.cells)
            .filter_map(|(who, c)| match c {
                Cell::Failed(why) => Some(format!("{} ({who}): {why}", self.name)),
                _ => None,
            })
            .collect()
    }
}

/// The workers table as Markdown.
pub fn workers_table(rows: &[WorkersRow]) -> String {
    let mut t = String::new();
    t.push_str(
        "| measurement | unit | synack, 1 worker | synack, 2 workers | 2 workers / 1 | CPU a GiB, 1 → 2 workers |\n",
    );
    t.push_str("|---|---|---:|---:|---:|---:|\n");
    for r in rows {
        let cpu = match r.cpu_ms_per_gib {
            [Some(one), Some(two)] if one > 0.0 => {
                format!("{one:.0} → {two:.0} ms ({:.2}×)", two / one)
            }
            _ => "—".into(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {cpu} |",
            r.name,
            r.unit,
            r.cells[0].show(),
            r.cells[1].show(),
            ratio(&r.cells[1], &r.cells[0]),
        );
    }
    t
}

/// The HTTP table as Markdown.
pub fn http_table(rows: &[HttpRow]) -> String {
    let mut t = String::new();
    t.push_str(
        "| measurement | unit | synack, 1 worker (TUN) | synack, 2 workers (TUN) | same server on kernel TCP (veth) | nginx, 1 worker (veth) | synack/kernel | synack/nginx | server CPU a request, 1 → 2 workers | same server on kernel TCP: CPU a request |\n",
    );
    t.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | requests/s | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.synack_1.show(),
            r.synack.show(),
            r.hyper.show(),
            r.nginx.show(),
            ratio(&r.synack, &r.hyper),
            ratio(&r.synack, &r.nginx),
            r.cpu(),
            r.hyper_cpu(),
        );
    }
    t
}

/// The table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    t.push_str(
        "| measurement | unit | synack (TUN) | smoltcp 0.14 (TUN) | kernel↔kernel (veth) | synack/smoltcp | synack/kernel |\n",
    );
    t.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            r.synack.show(),
            r.smoltcp.show(),
            r.kernel.show(),
            ratio(&r.synack, &r.smoltcp),
            ratio(&r.synack, &r.kernel),
        );
    }
    t
}

/// Replaces the text between the markers in `path` with `section` (markers kept), creating
/// the file, or appending the markers, as needed.
pub fn write_section(path: &Path, section: &str) -> io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e),
    };
    let new = splice(&old, section);
    std::fs::write(path, new)
}

/// `text` with the part between the markers replaced by `section`.
pub fn splice(text: &str, section: &str) -> String {
    let body = format!("{BEGIN}\n{}\n{END}", section.trim_end());
    match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{body}{}", &text[..b], &text[e + END.len()..])
        }
        _ => {
            let mut out = text.trim_end().to_owned();
            out.push_str("\n\n");
            out.push_str(&body);
            out.push('\n');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_markers() {
        let text = format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## criterion\nkept\n");
        let out = splice(&text, "new table\n");
        assert_eq!(
            out,
            format!("# B\n\nintro\n\n{BEGIN}\nnew table\n{END}\n\n## criterion\nkept\n")
        );
        // Idempotent.
        assert_eq!(splice(&out, "new table"), out);
    }

    #[test]
    fn splice_appends_markers_when_missing() {
        let out = splice("# Benchmarks\n", "t");
        assert_eq!(out, format!("# Benchmarks\n\n{BEGIN}\nt\n{END}\n"));
    }

    #[test]
    fn ratios_and_failures() {
        let mut r = Row::new("bulk", "Gbit/s");
        r.synack = Cell::Value {
            value: 2.0,
            intact: true,
        };
        r.smoltcp = Cell::Value {
            value: 1.0,
            intact: true,
        };
        r.kernel = Cell::Failed("boom".into());
        let t = table(&[r.clone()]);
        assert!(t.contains("| 2.00 | — |"), "{t}");
        assert_eq!(r.failures(), vec!["bulk (kernel): boom".to_string()]);
    }
}
