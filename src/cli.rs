//! What the three binaries share at the edge: flags parsed into one-line
//! usage errors (exit 2), and the value parsers their flags have in common.

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

/// Exit status for a bad flag, value or address, in every binary.
pub const EXIT_USAGE: u8 = 2;

/// Parses the process arguments. `--help`/`--version` print and exit 0;
/// any other clap error becomes one line on stderr (clap's own message
/// spans several lines with usage and hints) and exit status 2.
pub fn parse_args<P: Parser>(program: &str) -> Result<P, ExitCode> {
    P::try_parse().map_err(|e| {
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        eprintln!("{program}: {} (see {program} --help)", first_line(&e));
        ExitCode::from(EXIT_USAGE)
    })
}

fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

/// A whole number of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' must be a whole number of at least 1")),
    }
}

/// Seconds, fractions allowed, more than 0 and at most one day.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    match crate::config::parse_seconds(s)? {
        d if d.is_zero() => Err(format!("'{s}' must be more than 0 seconds")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_numbers_and_seconds() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert_eq!(positive_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(positive_seconds("0").is_err());
        assert!(positive_seconds("x").is_err());
    }

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(long, value_parser = positive)]
        n: usize,
    }

    #[test]
    fn clap_errors_become_one_line() {
        let e = Demo::try_parse_from(["demo", "--n", "zero"]).unwrap_err();
        let line = first_line(&e);
        assert!(!line.contains('\n'));
        assert!(line.contains("--n"), "{line}");
    }
}
