//! `cargo xtask`: builds stage images, boots them in QEMU, runs the tests.
//!
//! It owns the host-side workflow (prerequisites, cargo invocations, image
//! packing, device trees for boards QEMU has none for) and hands finished
//! images to `grading-runner`, which owns booting and checking them.

mod bench;
mod corrupt;
mod cpio;
mod dtb;
mod image;
mod linux;
mod menu;
mod prereq;
mod stages;
mod test;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};
use grading_runner::qemu::{ConsoleMode, QemuConfig};

/// Build, boot and test the AOS kit.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot a stage in QEMU on this terminal (Ctrl-A x quits, Ctrl-A c is the monitor).
    Run {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of cores.
        #[arg(long, default_value_t = 1)]
        smp: u32,
        /// Stop before the first instruction and wait for gdb on tcp::1234 (see `cargo xtask gdb`).
        #[arg(long)]
        gdb: bool,
        /// qemu-virt only: emulate EL2 so the kernel is entered at EL2 (PSCI over smc).
        #[arg(long)]
        el2: bool,
        /// Deterministic instruction counting (-icount shift=0,sleep=off).
        #[arg(long)]
        icount: bool,
    },
    /// Run all tests: host unit tests, then the QEMU grading suites. Ends with `N passed, N failed`.
    Test {
        /// Only this stage's host tests and suite.
        stage: Option<String>,
        /// Only this board's QEMU runs.
        #[arg(long)]
        board: Option<String>,
        /// Only checks whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// QEMU instances run at once (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Build a stage image for a board and print where it is.
    Image {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Benchmarks under deterministic instruction counting (-icount shift=0,sleep=off), side by side with Linux.
    Bench {
        /// Stage whose benchmarks to run: cpu-driver (the default) or m1.
        stage: Option<String>,
        /// Wall-clock nanoseconds without icount instead (host-dependent: printed, not written to the report).
        #[arg(long)]
        wall: bool,
    },
    /// Check formatting and run clippy for the host and for every stage and board on aarch64.
    Lint,
    /// Attach gdb-multiarch to a QEMU started with `cargo xtask run --gdb`.
    Gdb {
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Args, Debug)]
struct TargetArgs {
    /// Stage to build (default: the most complete milestone).
    stage: Option<String>,
    /// Board to build for.
    #[arg(long, default_value = "qemu-virt")]
    board: String,
    /// Debug build instead of release.
    #[arg(long)]
    debug: bool,
    /// For stages booted from menu.lst files: which menu (default: the stage's own).
    #[arg(long)]
    menu: Option<String>,
}

impl TargetArgs {
    fn resolve(&self) -> Result<(&'static stages::Stage, &'static platform::Board), String> {
        let stage = stages::find(self.stage.as_deref())?;
        let board = find_board(&self.board)?;
        Ok((stage, board))
    }
}

fn find_board(name: &str) -> Result<&'static platform::Board, String> {
    platform::by_name(name).ok_or_else(|| {
        let names: Vec<_> = platform::ALL.iter().map(|b| b.name).collect();
        format!("unknown board '{name}'; boards: {}", names.join(", "))
    })
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask sits inside the workspace").to_owned()
}

/// `cargo`, as the one that started us.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its description if it fails.
fn run_status(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() { Ok(()) } else { Err(format!("{} failed with {status}", describe(cmd))) }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Run { target, smp, gdb, el2, icount } => {
            let (stage, board) = target.resolve()?;
            prereq::rust()?;
            let built = image::build(stage, board, !target.debug)?;
            let Some(qemu) = board.qemu else {
                return Err(format!(
                    "{} cannot be booted here: no emulator models it. The image is built:\n  {}\n\
                     Boot it on the board from U-Boot: load it at {:#x} and `booti` it with the board's device tree.",
                    board.name,
                    built.image.display(),
                    board.image_base
                ));
            };
            prereq::qemu(qemu.min_version)?;
            let dtb = if qemu.provides_dtb { None } else { Some(dtb::write(board, smp)?) };
            let mut config = QemuConfig::new(board, &built.image, dtb.as_deref());
            if let stages::Kind::Kernel { default_menu, .. } = stage.kind {
                let menu = target.menu.as_deref().unwrap_or(default_menu);
                image::pack_menu(stage, board, menu)?.apply(&mut config);
            } else if target.menu.is_some() {
                return Err(format!("stage {} boots no menu.lst", stage.name));
            }
            config.smp = smp;
            config.gdb = gdb;
            config.el2 = el2;
            config.icount = icount;
            let mut cmd = config.command(&ConsoleMode::Interactive)?;
            eprintln!("booting {} on {} (Ctrl-A x quits, Ctrl-A c toggles the QEMU monitor)", stage.name, board.name);
            if gdb {
                eprintln!(
                    "waiting for gdb on tcp::1234: run `cargo xtask gdb {} --board {}` in another terminal",
                    stage.name, board.name
                );
            }
            let status = cmd.status().map_err(|e| format!("cannot start QEMU: {e}"))?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        Cmd::Test { stage, board, filter, jobs } => {
            let stage = stage.as_deref().map(|s| stages::find(Some(s))).transpose()?;
            let board = board.as_deref().map(find_board).transpose()?;
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let ok = test::run(stage, board, filter.as_deref(), jobs)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Image { target } => {
            let (stage, board) = target.resolve()?;
            prereq::rust()?;
            let built = image::build(stage, board, !target.debug)?;
            println!("{}", built.image.display());
            println!("{}", built.elf.display());
            if let stages::Kind::Kernel { default_menu, .. } = stage.kind {
                println!(
                    "{}",
                    image::pack_menu(stage, board, target.menu.as_deref().unwrap_or(default_menu))?.modules.display()
                );
            }
            if board.qemu.is_some_and(|q| !q.provides_dtb) {
                println!("{}", dtb::write(board, 1)?.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { stage, wall } => {
            bench::run(stage.as_deref(), wall)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint => {
            prereq::rust()?;
            run_status(cargo().args(["fmt", "--all", "--check"]))?;
            run_status(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
            let mut programs: Vec<&str> = Vec::new();
            for stage in stages::ALL {
                for board in platform::ALL {
                    run_status(
                        cargo().args(image::cargo_args("clippy", stage, board, true)).args(["--", "-D", "warnings"]),
                    )?;
                }
                if let stages::Kind::Kernel { programs: p, .. } = stage.kind
                    && !programs.contains(&p)
                {
                    programs.push(p);
                }
            }
            // User programs as they run: their aarch64-only code is hidden
            // from the host build above.
            for p in programs {
                run_status(cargo().args(image::program_args("clippy", p)).args(["--", "-D", "warnings"]))?;
            }
            // The libraries programs link (their asm and runtime included).
            run_status(
                cargo().args(["clippy", "-p", "aos", "-p", "grading", "--lib", "--target", image::TARGET]).args([
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ]),
            )?;
            eprintln!("lint: fmt and clippy clean (host and aarch64-unknown-none, every stage and board)");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gdb { target } => {
            let (stage, board) = target.resolve()?;
            prereq::gdb()?;
            let elf = image::elf_copy_path(stage, board);
            if !elf.exists() {
                return Err(format!(
                    "{} does not exist: start `cargo xtask run {} --board {} --gdb` first",
                    elf.display(),
                    stage.name,
                    board.name
                ));
            }
            let status = Command::new("gdb-multiarch")
                .arg("-q")
                .arg(&elf)
                .args(["-ex", "set architecture aarch64", "-ex", "target remote localhost:1234"])
                .status()
                .map_err(|e| format!("cannot start gdb-multiarch: {e}"))?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
