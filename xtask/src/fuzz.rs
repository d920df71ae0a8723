//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets of `fuzz/`, each
//! for a bounded time, and prints what ran, how fast, how the corpus grew and what was found.
//!
//! Only the stable toolchain is assumed: cargo-fuzz's instrumentation flags (`-Cpasses`,
//! `-Cllvm-args`) are stable, and `RUSTC_BOOTSTRAP=1` lets the pinned compiler accept the
//! nightly-only bits cargo-fuzz may pass. No sanitizer runs (`--sanitizer none`): the code under
//! test forbids `unsafe`, so panics (failed assertions) are what the targets look for. The
//! corpus of each target (`fuzz/corpus/TARGET/`, not committed) is seeded from `fixtures/` and a
//! few hand-written inputs the first time, and kept between runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{Selection, build_plugins, cargo, describe, run};

/// The targets, in the order they run, with the features of `fuzz/Cargo.toml` each needs (the
/// light ones build without the server and wasmtime).
const TARGETS: &[(&str, &str)] =
    &[("money", ""), ("idempotency_key", ""), ("openai_request", "host"), ("sse_decoder", "plugins")];

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

pub fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let (seconds, targets) = parse_args(args)?;
    ensure_cargo_fuzz(root)?;
    if targets.iter().any(|(name, _)| *name == "sse_decoder") {
        build_plugins(root, &Selection::All)?;
    }
    let fuzz_dir = root.join("fuzz");
    for (target, features) in &targets {
        println!("building fuzz target {target} (instrumented, release)");
        run(cargo_fuzz(root, "build", features).arg(target))?;
    }

    let mut reports = Vec::new();
    for (target, features) in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        seed(root, target, &corpus)?;
        reports.push(run_target(root, target, features, &corpus, seconds)?);
    }

    println!("\nfuzzing summary ({seconds} s per target, sanitizer none, libFuzzer via cargo-fuzz):");
    println!(
        "  {:<16} {:>8} {:>10} {:>8} {:>15} {:>6}  result",
        "target", "seconds", "runs", "exec/s", "corpus", "cov"
    );
    for r in &reports {
        let corpus = format!("{} -> {}", r.corpus_before, r.corpus_after);
        println!(
            "  {:<16} {:>8.0} {:>10} {:>8} {:>15} {:>6}  {}",
            r.target, r.seconds, r.runs, r.exec_per_sec, corpus, r.coverage, r.result
        );
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok).map(|r| r.target).collect();
    if !failed.is_empty() {
        bail!("fuzzing found failures in {}: see the logs and artifacts above", failed.join(", "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(u64, Vec<(&'static str, &'static str)>)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let value = args.next().context("`--seconds` needs a number")?;
            seconds = value
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .with_context(|| format!("`--seconds {value}`: give a whole number of seconds, at least 1"))?;
        } else if let Some(target) = TARGETS.iter().find(|(name, _)| name == arg) {
            targets.push(*target);
        } else {
            let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
            bail!(
                "unknown argument `{arg}`\nusage: cargo xtask fuzz [--seconds N] [TARGET...]\ntargets: {}",
                names.join(", ")
            );
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok((seconds, targets))
}

/// `cargo fuzz SUBCOMMAND` from the repository root, on the pinned stable toolchain, with only
/// the `features` of the fuzz package a target needs.
fn cargo_fuzz(root: &Path, subcommand: &str, features: &str) -> Command {
    let mut cmd = cargo(root);
    cmd.args(["fuzz", subcommand, "--fuzz-dir", "fuzz", "--sanitizer", "none", "--no-default-features"]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    cmd.env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is missing.
fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    let installed = cargo(root)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(());
    }
    println!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    run(cargo(root).args(["install", "cargo-fuzz", "--locked"]))
}

/// Seeds an empty corpus: recorded streams and requests from `fixtures/`, and a few
/// hand-written inputs at the edges of each grammar.
fn seed(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    fs::create_dir_all(corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    if count_files(corpus) > 0 {
        return Ok(());
    }
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    match target {
        "money" => {
            for text in ["0", "0.05", "12.500000000", "9223372036.854775807", "0.0000000015", "-1", "1e-3", "1."] {
                seeds.push(text.into());
            }
            seeds.push(i64::MIN.to_le_bytes().into());
        }
        "idempotency_key" => {
            for text in ["abc", " \"a\\\"b\\\\c\" ", "8e03978e-40d5-43e8-bc93-6894a57f9324", "\"abc\";p=1", "\"\""] {
                seeds.push(text.into());
            }
            seeds.push("k".repeat(256).into());
        }
        "openai_request" => {
            for request in fixture_files(root, "request.json")? {
                seeds.push(fs::read(&request).with_context(|| format!("cannot read {}", request.display()))?);
            }
        }
        "sse_decoder" => {
            let plugins = ["qwen", "openai", "anthropic"];
            for stream in fixture_files(root, "response.sse")? {
                let provider = stream.strip_prefix(root.join("fixtures")).ok().and_then(|p| p.iter().next());
                let Some(pick) = plugins.iter().position(|p| provider.is_some_and(|name| name == *p)) else {
                    continue;
                };
                let mut input = vec![pick as u8, 7];
                input.extend(fs::read(&stream).with_context(|| format!("cannot read {}", stream.display()))?);
                seeds.push(input);
            }
        }
        _ => {}
    }
    for (i, bytes) in seeds.iter().enumerate() {
        let path = corpus.join(format!("seed-{i:03}"));
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `fixtures/*/*/NAME`, sorted.
fn fixture_files(root: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let fixtures = root.join("fixtures");
    for provider in fs::read_dir(&fixtures).with_context(|| format!("cannot read {}", fixtures.display()))? {
        let provider = provider?.path();
        if !provider.is_dir() {
            continue;
        }
        for case in fs::read_dir(&provider)? {
            let file = case?.path().join(name);
            if file.is_file() {
                files.push(file);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).filter(|e| e.path().is_file()).count())
}

/// What one target's run did, read from libFuzzer's final statistics.
struct Report {
    target: &'static str,
    seconds: f64,
    runs: String,
    exec_per_sec: String,
    coverage: String,
    corpus_before: usize,
    corpus_after: usize,
    ok: bool,
    result: String,
}

fn run_target(root: &Path, target: &'static str, features: &str, corpus: &Path, seconds: u64) -> Result<Report> {
    let logs = root.join("fuzz").join("target").join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let corpus_before = count_files(corpus);
    let mut cmd = cargo_fuzz(root, "run", features);
    cmd.arg(target)
        .arg(corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=4096"])
        .stdout(log.try_clone()?)
        .stderr(log);
    println!("fuzzing {target} for {seconds} s (corpus: {corpus_before} inputs; log: {})", log_path.display());
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot start {}", describe(&cmd)))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let stat = |name: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .map(|value| value.trim().to_owned())
            .next_back()
            .unwrap_or_else(|| "?".to_owned())
    };
    // `#123 DONE   cov: 456 ft: ...`, or the last status line before a crash.
    let coverage = text
        .lines()
        .filter_map(|line| line.split_once("cov: ").and_then(|(_, rest)| rest.split_whitespace().next()))
        .next_back()
        .unwrap_or("?")
        .to_owned();
    let artifact = text
        .lines()
        .filter_map(|line| line.split_once("Test unit written to ").map(|(_, path)| path.trim().to_owned()))
        .next_back();
    let ok = status.success() && artifact.is_none();
    let result = match (&artifact, ok) {
        (_, true) => "no failure".to_owned(),
        (Some(path), false) => format!("FAILURE, input saved to {path}"),
        (None, false) => format!("FAILED ({status}), see {}", log_path.display()),
    };
    if !ok {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("--- last lines of {} ---", log_path.display());
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
    Ok(Report {
        target,
        seconds: elapsed,
        runs: stat("number_of_executed_units"),
        exec_per_sec: stat("average_exec_per_sec"),
        coverage,
        corpus_before,
        corpus_after: count_files(corpus),
        ok,
        result,
    })
}
