//! `cargo xtask`: the repository's automation, in Rust so it runs wherever
//! cargo does (the cargo-xtask convention; the alias is in `.cargo/config.toml`).
//!
//! Each task is an entry in [`TASKS`]: a name, a one-line description and a
//! function that gets the repository root and the remaining arguments. Add a
//! task by adding an entry; keep argument parsing inside the task (no clap:
//! xtask builds before anything else and should build fast).

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod fuzz;
mod scaffold;
use scaffold::{Format, new_plugin, scaffold_test};

/// A `cargo xtask` subcommand.
struct Task {
    name: &'static str,
    about: &'static str,
    run: fn(&Path, &[String]) -> Result<()>,
}

const TASKS: &[Task] = &[
    Task {
        name: "build-plugins",
        about: "[-p NAME]... build the provider plugins for wasm32-wasip2 into plugins/dist/ (test plugins into plugins/dist/test/); -p: only these",
        run: |root, args| build_plugins(root, &Selection::from_args(args)?),
    },
    Task {
        name: "new-plugin",
        about: "NAME [--format openai|custom]: scaffold plugins/NAME (OpenAI-compatible on the SDK, or a hand-mapped format) and fixtures/NAME, add it to the plugins workspace",
        run: |root, args| {
            let (name, format) = Format::parse_args(args)?;
            new_plugin(root, &name, format)
        },
    },
    Task {
        name: "scaffold-test",
        about: "on a copy of plugins/, wit/ and fixtures/: new-plugin demo (openai) and demo-custom (custom), build-plugins -p, `aigate plugin check` each",
        run: |root, args| {
            no_arguments("scaffold-test", args)?;
            scaffold_test(root)
        },
    },
    Task {
        name: "run",
        about: "build the shipped plugins, then start the gateway (`aigate serve`; extra args go to aigate)",
        run: |root, args| {
            build_plugins(root, &Selection::Shipped)?;
            // A build of its own, with cargo's progress (the first one takes minutes), then the
            // binary itself, so a built gateway starts without cargo's output.
            run(cargo(root).args(["build", "--package", "aigate"]))?;
            let mut cmd = Command::new(target_dir(root).join("debug").join("aigate"));
            cmd.current_dir(root);
            if args.is_empty() {
                cmd.arg("serve");
            } else {
                cmd.args(args);
            }
            run(&mut cmd)
        },
    },
    Task {
        name: "test",
        about: "build the plugins, then run every test: the host workspace and the plugins' own (extra args go to the host's cargo test)",
        run: |root, args| {
            build_plugins(root, &Selection::All)?;
            run(cargo(root).args(["test", "--manifest-path"]).arg(root.join("plugins/Cargo.toml")))?;
            run(cargo(root).args(["test", "--workspace"]).args(args))?;
            scaffold_test(root)
        },
    },
    Task {
        name: "fuzz",
        about: "[--seconds N] [TARGET...]: run the cargo-fuzz targets of fuzz/ for N s each (default 60), print a summary",
        run: fuzz::fuzz,
    },
    Task {
        name: "bench",
        about: "build the plugins, then measure plugin cost and the gateway's added latency (release build)",
        run: |root, args| {
            no_arguments("bench", args)?;
            build_plugins(root, &Selection::All)?;
            run(cargo(root).args(["bench", "--package", "aigate", "--bench", "gateway"]))
        },
    },
    Task {
        name: "loadtest",
        about: "build the plugins and the release binaries, then load-test `aigate serve` beside a direct mock upstream \
                (args go to `aigate-loadgen run`: --duration SECS --warmup SECS --connections N --perf FILE --perf-call-graph MODE --keep; \
                --no-netns runs outside a private network namespace)",
        run: loadtest,
    },
];

/// `cargo xtask loadtest`: the release `aigate` and `aigate-loadgen` (which starts the gateway
/// and a lean mock upstream as processes of their own and drives both), in a private network
/// namespace with loopback only when `unshare` allows one, so nothing else on the machine's
/// network shares the ports and queues.
fn loadtest(root: &Path, args: &[String]) -> Result<()> {
    build_plugins(root, &Selection::All)?;
    run(cargo(root).args(["build", "--release", "--package", "aigate", "--package", "aigate-loadgen"]))?;
    let release = target_dir(root).join("release");
    let no_netns = args.iter().any(|a| a == "--no-netns");
    // `perf` cannot attach from inside a user namespace.
    let profiling = args.iter().any(|a| a == "--perf");
    let passed: Vec<&String> = args.iter().filter(|a| *a != "--no-netns").collect();
    let netns = !no_netns && !profiling && private_network_available();
    let mut cmd = if netns {
        println!("load test in a private network namespace (loopback only)");
        let mut cmd = Command::new("unshare");
        cmd.args(["--map-root-user", "--net", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#]);
        cmd.arg(release.join("aigate-loadgen"));
        cmd
    } else {
        println!("load test on the host's loopback");
        Command::new(release.join("aigate-loadgen"))
    };
    cmd.current_dir(root).arg("run").arg("--aigate").arg(release.join("aigate")).args(passed);
    run(&mut cmd)
}

/// Whether `unshare` can give this user a network namespace of its own with `ip` in it.
fn private_network_available() -> bool {
    Command::new("unshare")
        .args(["--map-root-user", "--net", "ip", "link", "set", "lo", "up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Cargo's target folder: `CARGO_TARGET_DIR` or `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// `cargo` run from the repository root.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, rest)) = args.split_first() else {
        print_usage();
        return ExitCode::SUCCESS;
    };
    if matches!(name.as_str(), "help" | "-h" | "--help") {
        print_usage();
        return ExitCode::SUCCESS;
    }
    let Some(task) = TASKS.iter().find(|task| task.name == name) else {
        eprintln!("error: unknown task `{name}`\n");
        print_usage();
        return ExitCode::FAILURE;
    };
    match (task.run)(&repo_root(), rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_usage() {
    eprintln!("usage: cargo xtask <task> [args]\n\ntasks:");
    for task in TASKS {
        eprintln!("  {:<16} {}", task.name, task.about);
    }
}

fn no_arguments(task: &str, args: &[String]) -> Result<()> {
    match args.first() {
        Some(arg) => bail!("`{task}` takes no arguments (got `{arg}`)"),
        None => Ok(()),
    }
}

/// The repository root: xtask's own manifest sits in `<root>/xtask/`.
fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// The version the hot-reload tests swap in: the qwen plugin built again with
/// this version, as `plugins/dist/test/qwen-next.wasm`.
const NEXT_VERSION: &str = "0.1.1-next";

/// One plugin crate of the plugins workspace.
#[derive(Debug)]
struct PluginCrate {
    name: String,
    /// `[package.metadata.aigate] test-only = true`: installed in
    /// `plugins/dist/test/`, which the gateway does not watch.
    test_only: bool,
}

/// The plugin crates of the plugins workspace: every member whose manifest
/// builds a `cdylib` (the SDK and other libraries are skipped). Read from
/// `plugins/Cargo.toml`, so a new plugin only has to be a workspace member.
fn plugin_crates(plugins: &Path) -> Result<Vec<PluginCrate>> {
    let manifest = fs::read_to_string(plugins.join("Cargo.toml")).context("cannot read plugins/Cargo.toml")?;
    let mut crates = Vec::new();
    for member in workspace_members(&manifest)? {
        let path = plugins.join(&member).join("Cargo.toml");
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        if !lines.iter().any(|line| line.starts_with("crate-type") && line.contains("\"cdylib\"")) {
            continue;
        }
        let name = lines
            .iter()
            .find_map(|line| line.strip_prefix("name").map(str::trim).and_then(|rest| rest.strip_prefix('=')))
            .map(|value| value.trim().trim_matches('"').to_string())
            .with_context(|| format!("{} has no package name", path.display()))?;
        let test_only = lines.iter().any(|line| line.replace(' ', "") == "test-only=true");
        crates.push(PluginCrate { name, test_only });
    }
    Ok(crates)
}

/// The `members = [...]` of a workspace manifest (one line or several).
fn workspace_members(manifest: &str) -> Result<Vec<String>> {
    let start = manifest.find("members").context("plugins/Cargo.toml has no `members`")?;
    let open = start + manifest[start..].find('[').context("`members` is not a list")?;
    let close = open + manifest[open..].find(']').context("`members` is not closed")?;
    Ok(manifest[open + 1..close]
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect())
}

/// Which plugins `build-plugins` builds.
#[derive(Debug)]
enum Selection {
    /// Every plugin, the test plugins and the second qwen build: what the
    /// tests load (`cargo xtask build-plugins` with no arguments).
    All,
    /// Only the plugins the gateway ships (`cargo xtask run`).
    Shipped,
    /// Only these crates (`-p NAME`), test plugins included when named.
    Only(Vec<String>),
}

impl Selection {
    /// `[-p NAME]...` (also `--package NAME`); no arguments is [`Selection::All`].
    fn from_args(args: &[String]) -> Result<Selection> {
        let mut names = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-p" | "--package" => match args.next() {
                    Some(name) => names.push(name.clone()),
                    None => bail!("`{arg}` needs a plugin name: cargo xtask build-plugins -p NAME"),
                },
                other => bail!("build-plugins: unexpected `{other}` (usage: cargo xtask build-plugins [-p NAME]...)"),
            }
        }
        Ok(if names.is_empty() { Selection::All } else { Selection::Only(names) })
    }

    fn includes(&self, plugin: &PluginCrate) -> bool {
        match self {
            Selection::All => true,
            Selection::Shipped => !plugin.test_only,
            Selection::Only(names) => names.contains(&plugin.name),
        }
    }
}

/// Builds the selected plugins for `wasm32-wasip2` and installs the
/// components: shipped plugins in `plugins/dist/`, test plugins (and, for
/// [`Selection::All`], a second build of qwen reporting version
/// [`NEXT_VERSION`]) in `plugins/dist/test/`.
///
/// Files are replaced atomically (written beside the destination, then
/// renamed) because a running gateway watches `plugins/dist/` and must never
/// load a half-written component; an unchanged component is not rewritten, so
/// a rebuild with no changes does not trigger a reload.
fn build_plugins(root: &Path, selection: &Selection) -> Result<()> {
    build_plugins_into(root, &root.join("plugins").join("target"), selection)
}

/// [`build_plugins`] with an explicit cargo target folder (the scaffold test
/// builds a copy of the workspace but reuses the real one's compiled deps).
fn build_plugins_into(root: &Path, target_dir: &Path, selection: &Selection) -> Result<()> {
    let plugins = root.join("plugins");
    let dist = plugins.join("dist");
    let test_dist = dist.join("test");
    ensure_rust_target(root, WASM_TARGET)?;
    let all = plugin_crates(&plugins)?;
    if let Selection::Only(names) = selection
        && let Some(unknown) = names.iter().find(|name| !all.iter().any(|plugin| &plugin.name == *name))
    {
        let known: Vec<&str> = all.iter().map(|plugin| plugin.name.as_str()).collect();
        bail!("no plugin `{unknown}` in plugins/Cargo.toml (plugins: {})", known.join(", "));
    }
    let crates: Vec<&PluginCrate> = all.iter().filter(|plugin| selection.includes(plugin)).collect();

    let mut build = Vec::new();
    for plugin in &crates {
        build.extend(["--package", plugin.name.as_str()]);
    }
    cargo_build_wasm(&plugins, target_dir, &build, None)?;
    let release = target_dir.join(WASM_TARGET).join("release");
    let mut installed = Vec::new();
    for plugin in &crates {
        let folder = if plugin.test_only { &test_dist } else { &dist };
        installed.push(install(&release.join(artifact(&plugin.name)), &folder.join(artifact(&plugin.name)))?);
    }

    if matches!(selection, Selection::All) && crates.iter().any(|plugin| plugin.name == "qwen") {
        // A target dir of its own: the version is baked in at compile time, so
        // sharing one would rebuild qwen on every alternation.
        let next_target_dir = target_dir.join("next");
        cargo_build_wasm(&plugins, &next_target_dir, &["--package", "qwen"], Some(NEXT_VERSION))?;
        let next = next_target_dir.join(WASM_TARGET).join("release").join(artifact("qwen"));
        installed.push(install(&next, &test_dist.join("qwen-next.wasm"))?);
    }

    println!("\nplugins built for {WASM_TARGET}:");
    for (path, size, changed) in installed {
        let path = path.strip_prefix(root).unwrap_or(&path);
        let note = if changed { "" } else { "  (unchanged)" };
        println!("  {:<36} {:>9} bytes  {:>7.1} KiB{note}", path.display(), size, size as f64 / 1024.0);
    }
    Ok(())
}

/// The file cargo produces for a cdylib crate: hyphens become underscores.
fn artifact(crate_name: &str) -> String {
    format!("{}.wasm", crate_name.replace('-', "_"))
}

/// Installs a rustup target when it is missing. Without rustup the toolchain
/// is assumed complete; the build then reports a missing target itself.
fn ensure_rust_target(root: &Path, target: &str) -> Result<()> {
    // Run from the root so `rust-toolchain.toml` selects the toolchain.
    let installed = match Command::new("rustup").args(["target", "list", "--installed"]).current_dir(root).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).into_owned(),
        Ok(output) => {
            bail!("`rustup target list --installed` failed: {}", String::from_utf8_lossy(&output.stderr).trim())
        }
        Err(error) => {
            eprintln!("warning: cannot run rustup ({error}); assuming the {target} target is installed");
            return Ok(());
        }
    };
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    println!("installing the {target} target with rustup");
    run(Command::new("rustup").args(["target", "add", target]).current_dir(root))
}

/// `cargo build --release --target wasm32-wasip2` in the plugins workspace.
/// `version` overrides the version the plugins report (`AIGATE_PLUGIN_VERSION`);
/// without it the variable is cleared so a stray value in the caller's
/// environment cannot leak into the shipped plugins.
fn cargo_build_wasm(plugins: &Path, target_dir: &Path, extra: &[&str], version: Option<&str>) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(plugins)
        .arg("build")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .args(["--release", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .args(extra);
    match version {
        Some(version) => {
            println!("building plugins {} with AIGATE_PLUGIN_VERSION={version}", extra.join(" "));
            command.env("AIGATE_PLUGIN_VERSION", version);
        }
        None => {
            println!("building plugins");
            command.env_remove("AIGATE_PLUGIN_VERSION");
        }
    }
    run(&mut command)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    let args: Vec<&OsStr> = std::iter::once(command.get_program()).chain(command.get_args()).collect();
    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Copies `from` to `to` atomically. Returns the destination, its size and
/// whether it changed.
fn install(from: &Path, to: &Path) -> Result<(PathBuf, u64, bool)> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let size = bytes.len() as u64;
    if fs::read(to).is_ok_and(|existing| existing == bytes) {
        return Ok((to.to_path_buf(), size, false));
    }
    let dir = to.parent().context("destination has no folder")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = to.file_name().context("destination has no file name")?.to_string_lossy();
    // Hidden and not ending in `.wasm`, so a watcher never mistakes it for a plugin.
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, to)?;
        Ok(())
    };
    if let Err(error) = write() {
        let _ = fs::remove_file(&temp);
        return Err(error.context(format!("cannot install {}", to.display())));
    }
    Ok((to.to_path_buf(), size, true))
}
