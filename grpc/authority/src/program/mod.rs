//! `entitle-authority`: the licence authority (the cloud "CSSM" role) and its admin CLI.
//!
//! ```text
//! entitle-authority init  --data DIR
//! entitle-authority serve --data DIR [--listen 127.0.0.1:7171] [--renewal-days 30]
//!                         [--deadline-days 90] [--release-grace-days 30] [--certificate-days 365]
//! entitle-authority [--authority URL] [--data DIR | --credential-file F] <noun> <verb> ...
//! ```
//!
//! The admin commands are clients of the `AuthorityAdmin` service; they authenticate with
//! the credential `init` wrote (from `--credential-file`, `$ENTITLE_ADMIN_CREDENTIAL`, or
//! `DIR/admin.credential`).
//!
//! The binary's body, in the library so that the end-to-end tests run the same program:
//! here the arguments, `init`, `serve` and the connection; in [`admin`] each admin command
//! and how it prints.

mod admin;
mod args;

use std::process::ExitCode;

use crate::{self as authority, AuthorityState, DataDir};
use anyhow::Context as _;
use args::{Cli, Command};
use clap::Parser as _;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use tonic::transport::Channel;

/// Runs `entitle-authority` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {}", status.message()),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = || {
        cli.data
            .clone()
            .context("--data DIR (or $ENTITLE_DATA) is needed")
    };
    match &cli.command {
        Command::Init => {
            let dir = data()?;
            authority::init(&dir)?;
            println!("initialised an authority in {}", dir.display());
            println!(
                "admin credential: {} (mode 0600)",
                DataDir::new(&dir).admin_credential().display()
            );
            println!(
                "devices trust:    {}",
                DataDir::new(&dir).public_key().display()
            );
            Ok(())
        }
        Command::Serve { listen, periods } => {
            let periods = periods.periods();
            if let Err(e) = periods.validate() {
                eprintln!("error: {e}");
                std::process::exit(64);
            }
            let state = AuthorityState::open(&data()?, periods, authority::system_clock())?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!("entitle-authority listening on {}", listener.local_addr()?);
            authority::serve(state, listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(())
        }
        command => {
            let credential = admin_credential(&cli)?;
            let channel = Channel::from_shared(cli.authority.clone())
                .with_context(|| format!("{:?} is not a valid authority URL", cli.authority))?
                .connect()
                .await
                .with_context(|| format!("cannot reach the authority at {}", cli.authority))?;
            let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {credential}")
                .parse()
                .context("the admin credential holds invalid characters")?;
            let client =
                AuthorityAdminClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                    r.metadata_mut().insert("authorization", bearer.clone());
                    Ok(r)
                });
            admin::admin(client, command).await
        }
    }
}

fn admin_credential(cli: &Cli) -> anyhow::Result<String> {
    if let Ok(credential) = std::env::var("ENTITLE_ADMIN_CREDENTIAL") {
        return Ok(credential);
    }
    let path = match (&cli.credential_file, &cli.data) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => DataDir::new(dir).admin_credential(),
        (None, None) => anyhow::bail!(
            "no admin credential: give --credential-file, --data DIR or $ENTITLE_ADMIN_CREDENTIAL"
        ),
    };
    let bytes = entitle_proto::signing::read_secret(&path)
        .with_context(|| format!("cannot read the admin credential {}", path.display()))?;
    Ok(String::from_utf8(bytes)
        .context("the admin credential is not text")?
        .trim()
        .to_owned())
}
