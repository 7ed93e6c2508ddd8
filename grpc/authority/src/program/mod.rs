//! `entitle-authority`: the licence authority (the cloud "CSSM" role) and its admin CLI.
//!
//! ```text
//! entitle-authority init  --data DIR [--tls-name HOST]... | [--tls-cert PEM --tls-key PEM]
//!                         [--database postgres://...]
//! entitle-authority serve --data DIR [--listen 127.0.0.1:7171] [--admin-listen 127.0.0.1:7172]
//!                         [--database postgres://...] [--portal-listen 127.0.0.1:7173]
//!                         [--renewal-days 30] [--deadline-days 90] [--release-grace-days 30]
//!                         [--certificate-days 365]
//!                         [--role satellite [--cloud URL --cloud-ca PEM] [--sync-interval-secs 3600]
//!                          [--sync-deadline-days 30]]
//! entitle-authority satellite install --data DIR --delegation FILE --cloud-key CLOUD.pub
//! entitle-authority [--authority URL] [--ca PEM] [--data DIR | --credential-file F] <noun> <verb> ...
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
        Command::Init {
            tls_names,
            tls_cert,
            tls_key,
            database,
        } => {
            let dir = data()?;
            let tls = match (tls_cert, tls_key) {
                (Some(certificate), Some(key)) => authority::TlsSource::Operator {
                    certificate: certificate.clone(),
                    key: key.clone(),
                },
                _ => authority::TlsSource::PrivateCaFor(tls_names.clone()),
            };
            authority::init_at(&dir, &tls, database.as_deref())?;
            println!("initialised an authority in {}", dir.display());
            println!(
                "admin credential: {} (mode 0600)",
                DataDir::new(&dir).admin_credential().display()
            );
            println!(
                "devices trust:    {}",
                DataDir::new(&dir).public_key().display()
            );
            if DataDir::new(&dir).tls_ca().exists() {
                println!(
                    "TLS CA:           {} (authority_ca of devices, --ca of admins)",
                    DataDir::new(&dir).tls_ca().display()
                );
            }
            Ok(())
        }
        Command::Satellite(args::SatelliteCommand::Install {
            delegation,
            cloud_key,
        }) => {
            println!(
                "{}",
                authority::satellite::install(&data()?, delegation, cloud_key)?
            );
            Ok(())
        }
        Command::Serve {
            listen,
            admin_listen,
            database,
            portal_listen,
            periods,
            satellite,
        } => {
            let periods = periods.periods();
            if let Err(e) = periods.validate() {
                eprintln!("error: {e}");
                std::process::exit(64);
            }
            let role = match satellite.role.as_str() {
                "satellite" => authority::Role::Satellite {
                    sync_deadline: satellite
                        .sync_deadline_secs
                        .map_or(i64::from(satellite.sync_deadline_days) * 86_400, i64::from),
                },
                _ if satellite.cloud.is_some() => {
                    eprintln!("error: --cloud is for --role satellite");
                    std::process::exit(64);
                }
                _ => authority::Role::Cloud,
            };
            if satellite.sync_interval_secs == 0 {
                eprintln!("error: --sync-interval-secs must be at least 1");
                std::process::exit(64);
            }
            let dir = data()?;
            let location = match database {
                Some(url) => {
                    authority::store::Location::parse(Some(url), &DataDir::new(&dir).database())?
                }
                None => DataDir::new(&dir).location()?,
            };
            let state = AuthorityState::open_with(
                &dir,
                &location,
                periods,
                authority::system_clock(),
                role,
            )?;
            if let Some(url) = &satellite.cloud {
                let link = authority::satellite::CloudLink {
                    url: url.clone(),
                    ca: satellite.cloud_ca.clone(),
                    interval: std::time::Duration::from_secs(satellite.sync_interval_secs),
                };
                tokio::spawn(authority::satellite::network_sync(state.clone(), link));
            }
            let tls = authority::tls::server_config(&DataDir::new(&dir))?;
            let devices = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let admin = tokio::net::TcpListener::bind(admin_listen)
                .await
                .with_context(|| format!("cannot listen on {admin_listen}"))?;
            println!("entitle-authority listening on {}", devices.local_addr()?);
            println!("entitle-authority admin on {}", admin.local_addr()?);
            if let Some(address) = portal_listen {
                let portal = authority::portal::Portal::new(state.clone(), &dir)?;
                let tls = authority::portal::tls_config(&DataDir::new(&dir))?;
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address}"))?;
                println!(
                    "entitle-authority portal on https://{}",
                    listener.local_addr()?
                );
                tokio::spawn(authority::portal::serve(portal, listener, tls, async {
                    let _ = tokio::signal::ctrl_c().await;
                }));
            }
            authority::serve_tls(state, devices, admin, tls, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(())
        }
        command => {
            let credential = admin_credential(&cli)?;
            let ca = cli.ca.clone().or_else(|| {
                cli.data
                    .as_ref()
                    .map(|d| DataDir::new(d).tls_ca())
                    .filter(|ca| ca.exists())
            });
            let channel = entitle_proto::tls::endpoint(
                &cli.authority,
                ca.as_deref(),
                false,
                std::time::Duration::from_secs(30),
            )?
            .connect()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the authority at {}: {}",
                    cli.authority,
                    entitle_proto::tls::failure_reason(&e)
                )
            })?;
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
