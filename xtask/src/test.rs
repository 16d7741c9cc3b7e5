//! `cargo xtask test`: host unit tests, then per stage the image checks for
//! every board and the QEMU grading suite for every board QEMU runs. The
//! last line is `N passed, N failed` over all of it.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use grading_runner::Trial;
use grading_runner::libtest_mimic::{self, Arguments};
use grading_runner::qemu::QemuConfig;
use grading_runner::suites::Target;
use platform::Board;

use crate::stages::{self, Kind, Stage};
use crate::{cargo, dtb, image, prereq};

/// Runs everything selected; true if nothing failed.
pub fn run(
    stage: Option<&'static Stage>,
    board: Option<&'static Board>,
    filter: Option<&str>,
    jobs: usize,
) -> Result<bool, String> {
    prereq::rust()?;
    let (mut passed, mut failed) = host_tests(stage, filter)?;

    let stage_list: Vec<&'static Stage> = match stage {
        Some(s) => vec![s],
        None => stages::ALL.iter().collect(),
    };
    let boards: Vec<&'static Board> = match board {
        Some(b) => vec![b],
        None => platform::ALL.iter().collect(),
    };
    if let Some(min) = boards.iter().filter_map(|b| b.qemu.map(|q| q.min_version)).max() {
        prereq::qemu(min)?;
    }
    let mut checks = Vec::new();
    for &s in &stage_list {
        for &b in &boards {
            let built = image::build(s, b, true)?;
            let board = b;
            let built_for_check = image::Built { elf: built.elf.clone(), image: built.image.clone() };
            checks.push(Trial::test(format!("{}::{}::image_is_a_valid_arm64_image", s.name, b.name), move || {
                Ok(image::check(board, &built_for_check)?)
            }));
            let Some(q) = b.qemu else { continue };
            let dtb = if q.provides_dtb { None } else { Some(dtb::write(b, 1)?) };
            let base = QemuConfig::new(b, &built.image, dtb.as_deref());
            let mut variants = vec![(b.name.to_owned(), base.clone())];
            if q.machine.starts_with("virt") {
                // The same image entered at EL2, where PSCI answers smc.
                let mut el2 = base.clone();
                el2.el2 = true;
                variants.push((format!("{}-el2", b.name), el2));
            }
            let mut menus = Vec::new();
            if let Kind::Kernel { .. } = s.kind {
                for name in image::menus(s)? {
                    menus.push((name.clone(), image::pack_menu(s, b, &name)?));
                }
            }
            let targets: Vec<Target> = variants
                .into_iter()
                .map(|(label, config)| {
                    let menus = menus
                        .iter()
                        .map(|(name, packed)| {
                            let mut c = config.clone();
                            packed.apply(&mut c);
                            (name.clone(), c)
                        })
                        .collect();
                    Target { label, config, menus }
                })
                .collect();
            checks.extend((s.suite)(&targets));
        }
    }
    let args = Arguments { filter: filter.map(str::to_owned), test_threads: Some(jobs), ..Arguments::default() };
    let conclusion = libtest_mimic::run(&args, checks);
    passed += conclusion.num_passed as usize;
    failed += conclusion.num_failed as usize;
    println!("{passed} passed, {failed} failed");
    let _ = std::io::stdout().flush();
    Ok(failed == 0)
}

/// Runs `cargo test` for the workspace (or a stage's package), streaming its
/// output and summing its `test result:` lines.
fn host_tests(stage: Option<&Stage>, filter: Option<&str>) -> Result<(usize, usize), String> {
    let mut cmd = cargo();
    cmd.args(["test", "--no-fail-fast"]);
    match stage {
        Some(s) => {
            for p in s.host_packages() {
                cmd.args(["-p", p]);
            }
            &mut cmd
        }
        None => cmd.arg("--workspace"),
    };
    if let Some(f) = filter {
        cmd.args(["--", f]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().map_err(|e| format!("cannot start cargo test: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some((p, f)) = parse_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() && failed == 0 {
        // Did not build, or crashed: count it, keep going to the suites.
        println!("host tests: cargo test failed with {status}");
        failed += 1;
    }
    Ok((passed, failed))
}

/// Reads "test result: ok. 25 passed; 0 failed; ..." lines.
fn parse_result(line: &str) -> Option<(usize, usize)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<usize> {
        rest.split(';').find_map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            match words[..] {
                [.., n, w] if w == word => n.parse().ok(),
                _ => None,
            }
        })
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_result_lines() {
        assert_eq!(
            parse_result(
                "test result: ok. 25 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s"
            ),
            Some((25, 0))
        );
        assert_eq!(parse_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"), Some((3, 2)));
        assert_eq!(parse_result("running 3 tests"), None);
    }
}
