//! cli/README.md against the built binary: every command the README names parses (`keyward
//! <command> --help` exits 0), and every command the binary has is in the README.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

mod common;

const README: &str = include_str!("../README.md");

/// The lines of the README's code blocks, comments removed.
fn code_lines() -> Vec<&'static str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in README.lines() {
        if line.starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            lines.push(line.split(" #").next().unwrap_or(line));
        }
    }
    lines
}

/// The commands named in the README: the word after `keyward` and its global options (two
/// words for `quota`), e.g. `["issue"]`, `["quota", "set"]`.
fn readme_commands() -> BTreeSet<Vec<String>> {
    let mut commands = BTreeSet::new();
    for line in code_lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            if words[i].trim_start_matches("$(") != "keyward" {
                i += 1;
                continue;
            }
            i += 1;
            // Global options: `[--db URL]`, `--db X`, `--prefix=X`…
            while let Some(w) = words.get(i) {
                if w.starts_with('[') {
                    while !words[i].ends_with(']') {
                        i += 1;
                    }
                    i += 1;
                } else if w.starts_with("--db") || w.starts_with("--prefix") {
                    i += if w.contains('=') { 1 } else { 2 };
                } else {
                    break;
                }
            }
            let Some(command) = words.get(i) else { break };
            let mut named = vec![(*command).to_owned()];
            if *command == "quota"
                && let Some(sub) = words.get(i + 1)
            {
                named.push((*sub).to_owned());
            }
            commands.insert(named);
        }
    }
    commands
}

/// The subcommands `keyward <args> --help` lists (`help` aside).
fn listed_commands(args: &[&str]) -> Vec<String> {
    let out = common::command().args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = common::text(&out.stdout);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_in_the_readme_parses_with_the_binary() {
    let commands = readme_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for command in &commands {
        let out = common::command()
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`keyward {} --help`: {}",
            command.join(" "),
            common::text(&out.stderr)
        );
    }
}

#[test]
fn every_command_of_the_binary_is_in_the_readme() {
    let commands = readme_commands();
    for top in listed_commands(&[]) {
        if top == "quota" {
            for sub in listed_commands(&["quota"]) {
                let named = vec![top.clone(), sub];
                assert!(commands.contains(&named), "{named:?} not in the README");
            }
        } else {
            assert!(
                commands.contains(&vec![top.clone()]),
                "`{top}` not in the README"
            );
        }
    }
}

#[test]
fn the_readme_names_every_store_url_form_and_uses_absolute_links() {
    for form in [
        "sqlite:",
        "sqlite://",
        "sqlite::memory:",
        "postgres://",
        "postgresql://",
    ] {
        assert!(README.contains(form), "{form}");
    }
    // crates.io renders the README away from the repository: relative links would break.
    for (i, _) in README.match_indices("](") {
        let target = &README[i + 2..];
        assert!(
            target.starts_with("https://"),
            "a relative link: {}",
            &target[..target.find(')').unwrap_or(target.len())]
        );
    }
}
