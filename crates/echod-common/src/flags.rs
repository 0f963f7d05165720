//! What the three binaries share at the edge: flags parsed into one-line
//! usage errors (exit 2), and the value parsers their flags have in common.

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

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
        ExitCode::from(crate::exit::USAGE)
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
    match parse_seconds(s)? {
        d if d.is_zero() => Err(format!("'{s}' must be more than 0 seconds")),
        d => Ok(d),
    }
}

/// Parses `1048576`, `64K`, `64KiB`, `1M`, `1MiB`, `1G` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 65536, 64KiB, 1MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{text}': unknown size unit (use K, M or G)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses seconds, fractional allowed (`0.5`, `5`), at most one day.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("'{text}' must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e10").is_err());
    }

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
