//! `persys completion SHELL`: the completion script, generated from the clap definition
//! so it never drifts from the real flags.

use crate::args::{Cli, CompletionArgs};
use clap::CommandFactory;

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "persys", &mut out);
    out
}

/// `persys completion`.
pub fn completion(args: &CompletionArgs) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(&script(args.shell)).into_owned();
    crate::output::print_text(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    fn text(shell: Shell) -> String {
        String::from_utf8(script(shell)).expect("utf-8")
    }

    #[test]
    fn bash_completion_knows_the_verbs_and_flags() {
        let s = text(Shell::Bash);
        assert!(s.contains("_persys()"), "a bash function");
        for word in ["apply", "events", "cordon", "--wait", "--output"] {
            assert!(s.contains(word), "{word} missing");
        }
    }

    #[test]
    fn zsh_and_fish_completions_are_generated() {
        assert!(text(Shell::Zsh).starts_with("#compdef persys"));
        let fish = text(Shell::Fish);
        assert!(fish.contains("complete -c persys"), "{fish}");
        assert!(fish.contains("token"), "{fish}");
    }
}
