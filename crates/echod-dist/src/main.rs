//! `echod-dist [OUT_DIR]`: writes the man pages and shell completions under
//! OUT_DIR (default `dist/out`) and lists the files written on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("dist/out"));
    if args.next().is_some() {
        eprintln!("usage: echod-dist [OUT_DIR]");
        return ExitCode::from(2);
    }
    match echod_dist::generate(&out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echod-dist: cannot write under {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
