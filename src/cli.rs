//! The command line: every setting as a flag (`config::Options`), plus the flags that pick a
//! config file or only check or print it, and the `hash-password` subcommand. Lives in the
//! library so the man page is generated from the same definition the binary parses.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Options;

/// A thread-per-core io_uring FTP server with zero-copy downloads.
#[derive(Parser, Debug)]
#[command(name = "ringftpd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// Read settings from this TOML file (keys are the long flags with `_` for `-`); flags
    /// given here override it. It is read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML that --config accepts, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check the configuration (file, flags, users file, log paths) and exit: 0 when it is
    /// usable, non-zero with the reason when not.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Read a password (from the terminal without echo, or the first line of stdin) and print the
    /// `password = "..."` line for the users file.
    HashPassword,
}

impl Cli {
    /// The clap command with each setting's default (from `Config::default`) in its help.
    pub fn command_with_defaults() -> clap::Command {
        let mut cmd = Cli::command();
        for (key, shown) in Options::defaults_for_help() {
            cmd = cmd.mut_arg(key, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {shown}]"))
            });
        }
        cmd
    }

    /// Parse the process's arguments (exits with clap's message on a bad flag).
    pub fn parse_args() -> Cli {
        let matches = Cli::command_with_defaults().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command_with_defaults().debug_assert();
    }

    #[test]
    fn every_key_is_a_flag() {
        let cmd = Cli::command();
        for key in crate::config::KEYS {
            let long = key.replace('_', "-");
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_long() == Some(long.as_str())),
                "--{long} is not a flag"
            );
        }
    }
}
