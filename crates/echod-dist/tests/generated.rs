//! What `make dist` writes is usable: man pages that groff reads without a
//! warning and that document every flag, completion scripts that their
//! shells accept and that complete the real flags. Shells and groff that are
//! not installed are reported as SKIPPED (`make test-deps` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Command as ClapCommand;
use clap_complete::Shell;

/// A scratch folder removed on drop, one per test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("echod-dist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every `--long` flag of `cmd`, with clap's own `--help` and `--version`.
fn long_flags(cmd: &ClapCommand) -> Vec<String> {
    let mut cmd = cmd.clone();
    cmd.build();
    cmd.get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

#[test]
fn writes_a_man_page_and_three_completions_per_tool() {
    let scratch = Scratch::new("files");
    let files = echod_dist::generate(&scratch.0).expect("generate");
    let mut names: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&scratch.0)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut expected = Vec::new();
    for tool in ["echod", "echod-client", "echod-bench"] {
        expected.push(format!("man/{tool}.1"));
        expected.push(format!("completions/bash/{tool}"));
        expected.push(format!("completions/zsh/_{tool}"));
        expected.push(format!("completions/fish/{tool}.fish"));
    }
    expected.sort();
    assert_eq!(names, expected);
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() > 0,
            "{} is empty",
            f.display()
        );
    }
}

#[test]
fn man_pages_parse_and_document_every_flag() {
    let scratch = Scratch::new("man");
    echod_dist::generate(&scratch.0).expect("generate");
    let groff = have("groff");
    if !groff {
        eprintln!("SKIPPED: groff not installed; only the text of the man pages is checked");
    }
    for cmd in echod_dist::tools() {
        let name = cmd.get_name().to_string();
        let page_path = scratch.0.join("man").join(format!("{name}.1"));
        let page = std::fs::read_to_string(&page_path).unwrap();
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!(".TH {name} 1 "))),
            "{name}.1 has no .TH line for section 1:\n{page}"
        );
        for section in ["NAME", "SYNOPSIS", "OPTIONS", "\"SEE ALSO\""] {
            assert!(
                page.contains(&format!(".SH {section}\n")),
                "{name}.1 lacks {section}"
            );
        }
        for flag in long_flags(&cmd) {
            let roff = flag.replace('-', "\\-");
            assert!(page.contains(&roff), "{name}.1 does not document {flag}");
        }
        assert!(
            !page.contains(".SH EXTRA"),
            "after_help must be rendered as its own sections"
        );
        if groff {
            // -ww: every warning; -z: parse and format, print nothing.
            let (ok, text) = run(
                "groff",
                &["-man", "-Tutf8", "-ww", "-z", path_str(&page_path)],
            );
            assert!(ok && text.trim().is_empty(), "groff on {name}.1:\n{text}");
        }
    }
}

#[test]
fn bash_completions_parse_and_complete_the_real_flags() {
    let scratch = Scratch::new("bash");
    echod_dist::generate(&scratch.0).expect("generate");
    for cmd in echod_dist::tools() {
        let name = cmd.get_name().to_string();
        let script = scratch.0.join("completions/bash").join(&name);
        let (ok, text) = run("bash", &["-n", path_str(&script)]);
        assert!(ok, "bash -n {name}:\n{text}");
        // What bash does on `NAME --<TAB>`: the function registered for
        // NAME fills COMPREPLY.
        let probe = format!(
            "source '{}'; spec=$(complete -p {name}) || exit 1; \
             fn=${{spec##*-F }}; fn=${{fn%% *}}; \
             COMP_WORDS=({name} --); COMP_CWORD=1; COMP_LINE='{name} --'; COMP_POINT=${{#COMP_LINE}}; \
             \"$fn\" {name} -- {name}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path_str(&script)
        );
        let (ok, text) = run("bash", &["-c", &probe]);
        assert!(ok, "completing {name} --:\n{text}");
        let offered: Vec<&str> = text.split_whitespace().collect();
        for flag in long_flags(&cmd) {
            assert!(
                offered.contains(&flag.as_str()),
                "bash does not offer {flag} for {name}: {offered:?}"
            );
        }
    }
}

#[test]
fn zsh_and_fish_completions_parse() {
    let scratch = Scratch::new("zshfish");
    echod_dist::generate(&scratch.0).expect("generate");
    for (shell, name, check) in [
        (Shell::Zsh, "zsh", "-n"),
        (Shell::Fish, "fish", "--no-execute"),
    ] {
        if !have(name) {
            eprintln!("SKIPPED: {name} not installed; its completions are not parsed");
            continue;
        }
        for cmd in echod_dist::tools() {
            let file = echod_dist::completion_file_name(shell, cmd.get_name());
            let script = scratch.0.join("completions").join(name).join(file);
            let (ok, text) = run(name, &[check, path_str(&script)]);
            assert!(ok, "{name} {check} {}:\n{text}", script.display());
        }
    }
}
