//! `echod-dist`: the man pages and shell completions of the three binaries,
//! generated from their clap definitions so that they can never disagree
//! with `--help`.
//!
//! [`generate`] writes, under one output folder:
//!
//! ```text
//! man/echod.1  man/echod-client.1  man/echod-bench.1
//! completions/bash/echod            (and echod-client, echod-bench)
//! completions/zsh/_echod            (...)
//! completions/fish/echod.fish       (...)
//! ```
//!
//! Each file is named as its installed path expects it
//! (`/usr/share/bash-completion/completions/NAME`,
//! `/usr/share/zsh/vendor-completions/_NAME`,
//! `/usr/share/fish/vendor_completions.d/NAME.fish`), so an installer copies
//! folders without renaming. `make dist` runs the binary and adds the
//! executables, the docs and the systemd units; `make deb` packages the lot
//! (the `[package.metadata.deb]` table of the root Cargo.toml).
//!
//! # Layout
//! - this file: [`tools`], [`generate`] and the writers behind it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;

/// The shells completions are written for, with the folder under
/// `completions/` and the file name each one's loader looks for.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

/// The three binaries' commands, as their `main` parses them.
pub fn tools() -> Vec<Command> {
    vec![
        echod::Args::command(),
        echod_client::Args::command(),
        echod_bench::Args::command(),
    ]
}

/// The file a shell's completion loader looks for, for the command `name`.
pub fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// Writes every man page and completion file under `out` (created if
/// missing; files already there are replaced) and returns their paths.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for cmd in tools() {
        written.push(write_man_page(cmd.clone(), &out.join("man"))?);
        for (shell, dir) in SHELLS {
            written.push(write_completion(
                cmd.clone(),
                shell,
                &out.join("completions").join(dir),
            )?);
        }
    }
    Ok(written)
}

/// `dir/NAME.1`: clap_mangen's page (name, synopsis, description,
/// options), then the command's `after_help` text as sections of its own
/// (see [`after_help_roff`]), then SEE ALSO naming the other two tools and
/// the installed docs.
pub fn write_man_page(cmd: Command, dir: &Path) -> io::Result<PathBuf> {
    let name = cmd.get_name().to_string();
    let after_help = cmd.get_after_help().map(|s| s.to_string());
    let mut page = Vec::new();
    // clap_mangen would put `after_help` under "EXTRA" and let roff refill
    // its aligned tables; it is rendered below instead.
    clap_mangen::Man::new(cmd.after_help(None::<&str>)).render(&mut page)?;
    let mut page = String::from_utf8_lossy(&page).into_owned();
    // Its VERSION section only repeats what the title line says.
    if let Some(at) = page.find("\n.SH VERSION\n") {
        page.truncate(at + 1);
    }
    if let Some(text) = after_help {
        page.push_str(&after_help_roff(&text));
    }
    let others: Vec<String> = tools()
        .iter()
        .map(|c| c.get_name().to_string())
        .filter(|n| *n != name)
        .map(|n| format!(".BR {} (1)", roff_escape(&n)))
        .collect();
    page.push_str(&format!(
        ".SH \"SEE ALSO\"\n{},\n/usr/share/doc/echod/ (README.md and docs/: operations, protocol, load testing)\n",
        others.join(",\n")
    ));
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, page)?;
    Ok(path)
}

/// The `after_help` text as roff. It is written for an 80-column terminal:
/// paragraphs separated by blank lines, some of them a heading line ending
/// in `:` over an indented table (`Exit status:`, `Modes:`). Such a
/// paragraph becomes a section of its own (`.SH EXIT STATUS`) with its
/// table kept as typed (`.nf`); any other paragraph is filled text under
/// NOTES.
pub fn after_help_roff(text: &str) -> String {
    let mut notes = String::new();
    let mut sections = String::new();
    for para in text
        .split("\n\n")
        .map(str::trim_end)
        .filter(|p| !p.trim().is_empty())
    {
        let mut lines = para.lines();
        let first = lines.next().unwrap_or_default();
        let rest: Vec<&str> = lines.collect();
        let is_table = first.ends_with(':')
            && !first.starts_with(char::is_whitespace)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|l| l.starts_with(char::is_whitespace) || l.is_empty());
        if is_table {
            let indent = rest
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let heading = first.trim_end_matches(':').to_uppercase();
            sections.push_str(&format!(".SH \"{}\"\n.nf\n", roff_escape(&heading)));
            for line in rest {
                sections.push_str(&roff_line(line.get(indent..).unwrap_or("")));
                sections.push('\n');
            }
            sections.push_str(".fi\n");
        } else {
            notes.push_str(".PP\n");
            for line in para.lines() {
                notes.push_str(&roff_line(line.trim()));
                notes.push('\n');
            }
        }
    }
    if !notes.is_empty() {
        notes.insert_str(0, ".SH NOTES\n");
    }
    notes + &sections
}

/// One line of text as roff: escaped, and kept from being read as a
/// request if it starts with `.` or `'`.
fn roff_line(line: &str) -> String {
    let escaped = roff_escape(line);
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Text as roff prints it literally: `\\` as `\\e`, `-` as a real minus
/// (so man pages can be searched for flags), `'` as clap_mangen's `\\*(Aq`.
fn roff_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\*(Aq"),
            c => out.push(c),
        }
    }
    out
}

/// `dir/FILE`: clap_complete's script for `shell`, FILE as
/// [`completion_file_name`] says.
pub fn write_completion(mut cmd: Command, shell: Shell, dir: &Path) -> io::Result<PathBuf> {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name.as_str(), &mut script);
    fs::create_dir_all(dir)?;
    let path = dir.join(completion_file_name(shell, &name));
    fs::write(&path, script)?;
    Ok(path)
}
