//! Where plugin components are compiled: in this process, or in a child process
//! ([`Compiler::Subprocess`], what the gateway binary uses).
//!
//! Compiling is the one step that runs Cranelift over bytes a third party wrote. In a child:
//! - Cranelift's code and its working memory never enter the serving process. Measured on the
//!   release binary, compiling the four shipped plugins in-process left the gateway ~19 MiB
//!   larger for its whole life (freed compiler memory kept by the allocator's per-thread arenas,
//!   and the compiler's code pages); see docs/benchmarks.md.
//! - A compile that crashes, never ends or eats memory ends the child (killed after
//!   `timeout`), and that one load is refused; the gateway and the plugins it serves go on.
//! - The child starts with an empty environment: no provider secret is in its memory.
//!
//! The protocol: `PROGRAM ARGS… --memory-limit-bytes N --max-instances N` reads the component
//! on stdin, builds the engine with the same settings as the parent, compiles, and writes
//! wasmtime's serialized form on stdout; on failure it writes the reason on stderr and exits
//! non-zero. [`child_main`] is that program (`aigate __compile-plugin`). The parent checks what
//! comes back like any compiled artifact: wasmtime refuses bytes made by another version or
//! with other settings.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::runtime::{RuntimeConfig, engine_config};

/// Largest component accepted on the child's stdin, and largest compiled form read back from it.
pub(crate) const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// Of the child's stderr, what is kept for the error message.
const MAX_STDERR_BYTES: u64 = 8 << 10;

/// How [`crate::PluginRuntime`] compiles a component that is not in its cache.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// On a blocking thread of this process (tests, `aigate plugin check`).
    #[default]
    InProcess,
    /// In a child process running [`child_main`]: `program args…` plus the engine settings.
    Subprocess {
        program: PathBuf,
        args: Vec<OsString>,
        /// The child is killed and the load refused after this long.
        timeout: Duration,
    },
}

impl Compiler {
    /// The running executable as the compiler, called as `EXE __compile-plugin`: what the
    /// gateway binary uses. On Linux `/proc/self/exe`, which still runs this very build after
    /// its file was replaced by an upgrade (a newer build's output would not load here).
    pub fn this_executable(subcommand: &str, timeout: Duration) -> std::io::Result<Compiler> {
        let proc_exe = PathBuf::from("/proc/self/exe");
        let program = if proc_exe.exists() { proc_exe } else { std::env::current_exe()? };
        Ok(Compiler::Subprocess { program, args: vec![subcommand.into()], timeout })
    }
}

/// The engine settings a child needs to compile for `config`'s engine.
fn engine_args(config: &RuntimeConfig) -> [String; 4] {
    [
        "--memory-limit-bytes".to_owned(),
        config.memory_limit_bytes.to_string(),
        "--max-instances".to_owned(),
        config.max_instances.to_string(),
    ]
}

/// Why a child did not compile a component.
#[derive(Debug)]
pub(crate) enum ChildFailure {
    /// The component was refused: the child's own message (not valid WebAssembly, say).
    Refused(String),
    /// The compiler itself failed: could not start, crashed, timed out, answered too much.
    Broken(String),
}

/// Runs the child compiler on `component`; its serialized output.
pub(crate) async fn compile_in_child(
    config: &RuntimeConfig,
    program: &PathBuf,
    args: &[OsString],
    timeout: Duration,
    component: &[u8],
) -> Result<Vec<u8>, ChildFailure> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(engine_args(config))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ChildFailure::Broken(format!("cannot start the plugin compiler {}: {e}", program.display())))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ChildFailure::Broken("the plugin compiler's pipes are missing".to_owned()));
    };
    let talk = async {
        let write = async {
            // A child that stops reading (it crashed) closes the pipe: its exit status tells why.
            let _ = stdin.write_all(component).await;
            drop(stdin);
        };
        let ((), out, err) =
            tokio::join!(write, read_capped(stdout, MAX_COMPONENT_BYTES + 1), read_capped(stderr, MAX_STDERR_BYTES));
        let status = child.wait().await;
        (out, err.unwrap_or_default(), status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, talk).await {
        Ok(done) => done,
        Err(_) => {
            // `kill_on_drop` ends it; the runtime reaps it.
            return Err(ChildFailure::Broken(format!(
                "the plugin compiler did not finish within {} s and was stopped",
                timeout.as_secs()
            )));
        }
    };
    let stderr_text = String::from_utf8_lossy(&err).trim().to_owned();
    let status = status.map_err(|e| ChildFailure::Broken(format!("cannot wait for the plugin compiler: {e}")))?;
    match status.code() {
        Some(0) => {}
        Some(CHILD_REFUSED) => return Err(ChildFailure::Refused(stderr_text)),
        Some(code) => {
            return Err(ChildFailure::Broken(format!("the plugin compiler exited with status {code}: {stderr_text}")));
        }
        None => {
            return Err(ChildFailure::Broken(format!(
                "the plugin compiler was ended by a signal{}",
                if stderr_text.is_empty() { String::new() } else { format!(": {stderr_text}") }
            )));
        }
    }
    let out = out.map_err(|e| ChildFailure::Broken(format!("cannot read the plugin compiler's output: {e}")))?;
    if out.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ChildFailure::Broken(format!(
            "the plugin compiler's output is larger than {MAX_COMPONENT_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// Reads `reader` to its end, keeping the first `cap` bytes (the rest is read and dropped, so a
/// talkative child never blocks on a full pipe).
async fn read_capped(mut reader: impl tokio::io::AsyncRead + Unpin, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// The child's exit status when it refuses the component (any other failure is another status).
const CHILD_REFUSED: i32 = 3;

/// The compiler child's body: see the module docs. Returns the process exit status.
pub fn child_main(args: &[OsString]) -> i32 {
    match child(args) {
        Ok(()) => 0,
        Err((status, message)) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            status
        }
    }
}

fn child(args: &[OsString]) -> Result<(), (i32, String)> {
    let usage =
        |what: &str| (2, format!("{what}; usage: --memory-limit-bytes N --max-instances N, the component on stdin"));
    let mut config = RuntimeConfig::default();
    let mut it = args.iter().map(|a| a.to_str().unwrap_or_default());
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| usage(&format!("`{flag}` needs a value")))?;
        match flag {
            "--memory-limit-bytes" => {
                config.memory_limit_bytes =
                    value.parse().map_err(|_| usage("`--memory-limit-bytes` needs a number"))?;
            }
            "--max-instances" => {
                config.max_instances = value.parse().map_err(|_| usage("`--max-instances` needs a number"))?;
            }
            _ => return Err(usage(&format!("unknown argument `{flag}`"))),
        }
    }
    let mut component = Vec::new();
    std::io::stdin()
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut component)
        .map_err(|e| (1, format!("cannot read the component from stdin: {e}")))?;
    if component.len() as u64 > MAX_COMPONENT_BYTES {
        return Err((CHILD_REFUSED, format!("the component is larger than {MAX_COMPONENT_BYTES} bytes")));
    }
    let engine = wasmtime::Engine::new(&engine_config(&config))
        .map_err(|e| (1, format!("cannot create the WebAssembly engine: {e:#}")))?;
    let compiled = engine.precompile_component(&component).map_err(|e| (CHILD_REFUSED, format!("{e:#}")))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&compiled)
        .and_then(|()| stdout.flush())
        .map_err(|e| (1, format!("cannot write the compiled component: {e}")))
}
