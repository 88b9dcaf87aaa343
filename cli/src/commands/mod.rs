//! One module per verb. Each takes a [`Ctx`] (API client + output format) and its args.

pub mod apply;
pub mod completion;
pub mod events;
pub mod join;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod pki;
pub mod policy;
pub mod resolve;
pub mod run;
pub mod schedule;
pub mod services;
pub mod snapshot;
pub mod tokens;
pub mod version;
pub mod wait;
pub mod why;
pub mod workloads;

use crate::args::{
    Cli, Command, NodeCommand, PolicyCommand, SnapshotCommand, TokenCommand, WorkloadCommand,
};
use crate::client::ApiClient;
use crate::config;
use crate::output::Format;
use lifecycle::Action;
use nodes::NodeAction;

/// What every API verb needs.
pub struct Ctx {
    /// The API client built from the config.
    pub client: ApiClient,
    /// How to print.
    pub format: Format,
    /// Whether stdout gets colour (a terminal, and `NO_COLOR` unset).
    pub colour: bool,
}

/// Run the parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        config: config_flag,
        token,
        output,
        command,
    } = cli;
    // Verbs that need no cluster: no config is read for them.
    match command {
        Command::Dev(args) => return crate::dev::run(args).await,
        // Local files only: the join token is not handed out by the API.
        Command::Node(NodeCommand::JoinCommand(args)) => return join::join_command(&args, output),
        Command::Completion(args) => return completion::completion(&args),
        Command::Pki(p) => return pki::run(&p),
        Command::Version => return version::version(output),
        _ => {}
    }
    let mut config = config::load(config_flag.as_deref())?;
    if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
        config.file.token = Some(t.trim().to_string());
    }
    let ctx = Ctx {
        client: ApiClient::from_config(&config)?,
        format: output,
        colour: crate::output::stdout_colour(),
    };
    match command {
        // Handled above, before any config is needed.
        Command::Dev(_) | Command::Completion(_) | Command::Pki(_) | Command::Version => Ok(()),
        Command::Run(args) => run::run(&ctx, &args).await,
        Command::Apply(args) => apply::apply(&ctx, &args.file).await,
        Command::Ps(args) => workloads::list(&ctx, &args).await,
        Command::Get(a) => workloads::get(&ctx, &a.id).await,
        Command::Describe(a) => workloads::describe(&ctx, &a.id).await,
        Command::Why(a) => why::why(&ctx, &a.id).await,
        Command::Logs(args) => logs::logs(&ctx, &args).await,
        Command::Stop(a) => lifecycle::apply(&ctx, Action::Stop, &a.id).await,
        Command::Start(a) => lifecycle::apply(&ctx, Action::Start, &a.id).await,
        Command::Rm(a) => lifecycle::apply(&ctx, Action::Remove, &a.id).await,
        Command::Redeploy(a) => lifecycle::apply(&ctx, Action::Redeploy, &a.id).await,
        Command::Workload(w) => match w {
            WorkloadCommand::Schedule { file } => schedule::schedule(&ctx, &file).await,
            WorkloadCommand::Apply(args) => apply::apply(&ctx, &args.file).await,
            WorkloadCommand::List(args) => workloads::list(&ctx, &args).await,
            WorkloadCommand::Get(a) => workloads::get(&ctx, &a.id).await,
            WorkloadCommand::Describe(a) => workloads::describe(&ctx, &a.id).await,
            WorkloadCommand::Logs(args) => logs::logs(&ctx, &args).await,
            WorkloadCommand::Stop(a) => lifecycle::apply(&ctx, Action::Stop, &a.id).await,
            WorkloadCommand::Start(a) => lifecycle::apply(&ctx, Action::Start, &a.id).await,
            WorkloadCommand::Rm(a) => lifecycle::apply(&ctx, Action::Remove, &a.id).await,
            WorkloadCommand::Redeploy(a) => lifecycle::apply(&ctx, Action::Redeploy, &a.id).await,
        },
        Command::Node(n) => match n {
            NodeCommand::List => nodes::list(&ctx).await,
            NodeCommand::Get { id } => nodes::get(&ctx, &id).await,
            NodeCommand::Cordon { id } => nodes::control(&ctx, NodeAction::Cordon, &id).await,
            NodeCommand::Uncordon { id } => nodes::control(&ctx, NodeAction::Uncordon, &id).await,
            NodeCommand::Drain { id } => nodes::control(&ctx, NodeAction::Drain, &id).await,
            NodeCommand::Rm { id } => nodes::remove(&ctx, &id).await,
            // Handled above, before any config is needed.
            NodeCommand::JoinCommand(_) => Ok(()),
        },
        Command::Events(args) => events::events(&ctx, &args).await,
        Command::Metrics => metrics::metrics(&ctx).await,
        Command::Policy(p) => match p {
            PolicyCommand::Get => policy::get(&ctx).await,
            PolicyCommand::Set { file } => policy::set(&ctx, &file).await,
        },
        Command::Service(s) => services::run(&ctx, s).await,
        Command::Snapshot(s) => match s {
            SnapshotCommand::Save { file } => snapshot::save(&ctx, &file).await,
            SnapshotCommand::Restore { file } => snapshot::restore(&ctx, &file).await,
        },
        Command::Token(t) => match t {
            TokenCommand::Create { name, role } => tokens::create(&ctx, &name, role).await,
            TokenCommand::List => tokens::list(&ctx).await,
            TokenCommand::Revoke { id } => tokens::revoke(&ctx, &id).await,
        },
    }
}

/// Percent-encode one path segment or query value (everything but RFC 3986 unreserved).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&k=v` from the pairs that have a value, or `""`.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", escape(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_unreserved_and_encodes_the_rest() {
        assert_eq!(escape("abc-1_2.~"), "abc-1_2.~");
        assert_eq!(escape("a/b?c=d e"), "a%2Fb%3Fc%3Dd%20e");
    }

    #[test]
    fn query_skips_absent_values() {
        assert_eq!(query(&[("a", None), ("b", None)]), "");
        assert_eq!(
            query(&[
                ("status", Some("Running".into())),
                ("node", None),
                ("label", Some("k=v".into()))
            ]),
            "?status=Running&label=k%3Dv"
        );
    }
}
