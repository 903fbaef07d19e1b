//! Runs the whole harness in `--quick` mode (tiny sizes, one repetition, a few seconds) and
//! checks correctness only: every row measured for every implementation it applies to (the
//! HTTP rows with wrk against the http_server example and the relay rows through the
//! transparent_relay example, which `cargo test --workspace` builds and the harness builds
//! itself otherwise), every byte intact, the BENCHMARKS.md section written between its
//! markers, and no namespace left.
//! Speed is not asserted.

use std::process::Command;

use synack_tokio::netns::require_tun;

#[test]
fn quick_run_measures_every_row_and_cleans_up() {
    if !require_tun("quick_run_measures_every_row_and_cleans_up") {
        return;
    }
    // The HTTP rows run the http_server example, which `cargo test --workspace` builds
    // (a narrower `cargo test -p synack-bench` does not).
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_synack-bench"));
    for name in ["http_server", "transparent_relay"] {
        let example = bench.parent().unwrap().join("examples").join(name);
        if !example.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the {name} example was not built ({})",
                example.display()
            );
            eprintln!(
                "skipping quick_run_measures_every_row_and_cleans_up: no {name} example; \
                 run cargo test --workspace"
            );
            return;
        }
    }
    // Named at random and created new (O_EXCL, which follows no symlink): run as root, the
    // test must not write through a link a local user put at a name it could guess.
    let random = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let out_path = std::env::temp_dir().join(format!("synack-bench-quick-{random:016x}.md"));
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out_path)
            .unwrap();
        file.write_all(
            b"# Benchmarks\n\n<!-- harness:begin -->\nstale\n<!-- harness:end -->\n\n## criterion\nkept\n",
        )
        .unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_synack-bench"))
        // `cargo test --workspace` built the http_server example; a nested cargo build would
        // wait for the lock this run holds.
        .env("SYNACK_BENCH_NO_BUILD", "1")
        .arg("--quick")
        .arg("--output")
        .arg(&out_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed:\n{stdout}\n{stderr}");

    // Four tables, each a header, a rule and its rows, a blank line between them: 10 rows of
    // transport measurements, 3 HTTP rows, 2 rows of one worker against two, then the
    // relay's 2 transfers and 2 memory rows.
    let tables: Vec<Vec<Vec<&str>>> = stdout
        .split("\n\n")
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with('|'))
                .skip(2)
                .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(tables.len(), 4, "{stdout}");
    assert_eq!(tables[2].len(), 2, "{stdout}");
    for row in &tables[2] {
        // One worker and two: plain numbers above zero (data intact), and the CPU cell.
        for c in [row[2], row[3]] {
            let v: f64 = c.parse().unwrap_or_else(|_| {
                panic!("{}: {c:?} is not a number\n{stdout}\n{stderr}", row[0])
            });
            assert!(v > 0.0, "{}: {c}", row[0]);
        }
        // The quick run's transfers take less CPU than /proc's 10 ms ticks can show.
        assert!(
            row[5].contains("ms") || row[5] == "—",
            "{}: {:?}\n{stdout}",
            row[0],
            row[5]
        );
    }
    assert_eq!(tables[3].len(), 4, "{stdout}");
    for row in &tables[3][..2] {
        // Through the relay and direct: plain numbers above zero.
        for c in [row[2], row[3]] {
            let v: f64 = c.parse().unwrap_or_else(|_| {
                panic!("{}: {c:?} is not a number\n{stdout}\n{stderr}", row[0])
            });
            assert!(v > 0.0, "{}: {c}", row[0]);
        }
    }
    assert!(tables[3][2][2].contains('→'), "{stdout}");
    let per_flow: f64 = tables[3][3][2]
        .parse()
        .unwrap_or_else(|_| panic!("per-flow memory: {stdout}\n{stderr}"));
    assert!(per_flow >= 0.0);
    let rows = &tables[0];
    assert_eq!(rows.len(), 14, "{stdout}");
    // wrk's rates: synack's http_server and the same server on kernel TCP in every row, nginx
    // where it is installed (CI installs it).
    let nginx = Command::new("sh")
        .args(["-c", "command -v nginx"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        nginx || std::env::var("CI").as_deref() != Ok("true"),
        "CI needs nginx"
    );
    assert_eq!(tables[1].len(), 3, "{stdout}");
    for row in &tables[1] {
        // synack with one worker and with two, the same server on the kernel, nginx.
        let mut cells = vec![row[2], row[3], row[4]];
        if nginx {
            cells.push(row[5]);
        }
        // The server's CPU time a request, with one worker and with two: "a → b µs (r×)".
        assert!(row[8].contains("µs"), "{}: {:?}\n{stdout}", row[0], row[8]);
        for c in cells {
            let v: f64 = c.parse().unwrap_or_else(|_| {
                panic!("{}: {c:?} is not a number\n{stdout}\n{stderr}", row[0])
            });
            assert!(v > 0.0, "{}: {c}", row[0]);
        }
    }
    for row in rows {
        let (name, synack, smoltcp, kernel) = (row[0], row[2], row[3], row[4]);
        // synack is measured in every row, the kernel in every row but those comparing the
        // two stacks on equal plain-TUN MTUs, smoltcp in the bulk rows (the offload-TUN rows
        // repeat its plain-TUN numbers); each measured cell is a plain number (not FAILED,
        // CORRUPT or a timeout) above zero.
        let mut cells = vec![synack];
        if name.contains("both at MTU") {
            assert_eq!(kernel, "—", "{name}");
        } else {
            cells.push(kernel);
        }
        if name.starts_with("bulk") {
            cells.push(smoltcp);
        } else {
            assert_eq!(smoltcp, "—", "{name}");
        }
        for c in cells {
            let v: f64 = c
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {c:?} is not a number\n{stdout}\n{stderr}"));
            assert!(v > 0.0, "{name}: {c}");
        }
    }

    // The section was replaced between the markers; the rest of the file kept.
    let md = std::fs::read_to_string(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);
    assert!(!md.contains("stale"), "{md}");
    assert!(md.contains("## criterion\nkept\n"), "{md}");
    assert!(md.contains("`sudo cargo run --release -p synack-bench -- --quick --output"));
    assert!(md.contains("| 1-byte ping-pong, one connection |"), "{md}");
    assert!(
        md.contains("| HTTP/1.1 keep-alive, 1 connection, 1 KB |"),
        "{md}"
    );

    // Every namespace the run made is gone.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("synack-bench-{pid}-");
    let left: Vec<_> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
