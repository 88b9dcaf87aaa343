//! `persys`: see the library for everything; this only hands over.

fn main() -> std::process::ExitCode {
    persys_cli::main_entry()
}
