//! `entitle-authority`: the licence authority (the cloud "CSSM" role) and its admin CLI.
//!
//! ```text
//! entitle-authority init  --data DIR
//! entitle-authority serve --data DIR [--listen 127.0.0.1:7171]
//! entitle-authority [--authority URL] [--data DIR | --credential-file F] <noun> <verb> ...
//! ```
//!
//! The admin commands are clients of the `AuthorityAdmin` service; they authenticate with
//! the credential `init` wrote (from `--credential-file`, `$ENTITLE_ADMIN_CREDENTIAL`, or
//! `DIR/admin.credential`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use entitle_grpc::authority::{self, AuthorityState, DataDir, Periods};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "entitle-authority",
    version,
    about = "The entitle licence authority and its admin CLI"
)]
struct Cli {
    /// The authority to administer.
    #[arg(
        long,
        global = true,
        env = "ENTITLE_AUTHORITY",
        default_value = "http://127.0.0.1:7171"
    )]
    authority: String,
    /// The authority's data directory (for init and serve, and to find the admin credential).
    #[arg(long, global = true, env = "ENTITLE_DATA")]
    data: Option<PathBuf>,
    /// A file holding the admin credential.
    #[arg(long, global = true)]
    credential_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the store, the signing key and the admin credential in --data.
    Init,
    /// Serves the Authority and AuthorityAdmin services.
    Serve {
        /// Address to listen on (port 0 picks a free one; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:7171")]
        listen: String,
    },
    /// Smart accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Virtual accounts of a smart account.
    #[command(subcommand, name = "virtual-account")]
    VirtualAccount(VirtualAccountCommand),
    /// Licence pools of a virtual account.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// ID tokens for registering devices.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Registered product instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// The usage ledger.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Licence reservation for devices that never call home (PLR and SLR).
    #[command(subcommand)]
    Reservation(ReservationCommand),
}

#[derive(Subcommand)]
enum ReservationCommand {
    /// Answers a device's request code with a permanent (PLR) authorisation code.
    Plr {
        smart_account: String,
        virtual_account: String,
        request_code: String,
    },
    /// Answers a device's request code with a specific (SLR) authorisation code reserving
    /// the listed licences, such as PAR-TPS=1 PAR-ADD-TPS=2; they leave the pool.
    Slr {
        smart_account: String,
        virtual_account: String,
        request_code: String,
        /// TAG=COUNT, one or more.
        #[arg(required = true)]
        licences: Vec<String>,
    },
    /// Takes a device's return code: the reserved licences go back to the pool.
    Return { return_code: String },
    /// Lists the reservations of a smart account.
    List { smart_account: String },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates a smart account.
    Create {
        name: String,
        /// The account may reserve licences permanently (PLR).
        #[arg(long)]
        plr: bool,
        /// The account may use export-controlled functionality.
        #[arg(long)]
        export_controlled: bool,
    },
    /// Lists smart accounts.
    List,
}

#[derive(Subcommand)]
enum VirtualAccountCommand {
    /// Creates a virtual account.
    Create { smart_account: String, name: String },
    /// Lists the virtual accounts of a smart account.
    List { smart_account: String },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Adds licences of a tag (such as PAR-TPS) to a virtual account.
    Add {
        smart_account: String,
        virtual_account: String,
        tag: String,
        quantity: u64,
        /// A term licence ending in this many days (default: perpetual).
        #[arg(long)]
        term_days: Option<u32>,
        /// The licences may be reserved permanently (PLR).
        #[arg(long)]
        plr_capable: bool,
    },
    /// Lists the pools of a virtual account.
    List {
        smart_account: String,
        virtual_account: String,
    },
    /// Moves unconsumed licences (with --force, licences in use too) to another virtual account.
    Transfer {
        smart_account: String,
        from: String,
        to: String,
        tag: String,
        quantity: u64,
        /// Moves licences even when they are in use; the devices holding them are granted
        /// less at their next authorisation (OUT_OF_COMPLIANCE).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates an ID token; prints its secret once.
    Create {
        smart_account: String,
        virtual_account: String,
        /// Days the token is valid (1 to 365).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Registrations it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long)]
        export_controlled: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Lists the tokens of a virtual account.
    List {
        smart_account: String,
        virtual_account: String,
    },
    /// Revokes a token by its id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum InstanceCommand {
    /// Lists the product instances of a virtual account.
    List {
        smart_account: String,
        virtual_account: String,
    },
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Shows usage totals of a virtual account or one instance.
    Show {
        smart_account: Option<String>,
        virtual_account: Option<String>,
        #[arg(long)]
        instance: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Lists audit entries.
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn main() -> ExitCode {
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
        Command::Serve { listen } => {
            let state =
                AuthorityState::open(&data()?, Periods::default(), authority::system_clock())?;
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
            admin(client, command).await
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
    let bytes = entitle_grpc::crypto::read_secret(&path)
        .with_context(|| format!("cannot read the admin credential {}", path.display()))?;
    Ok(String::from_utf8(bytes)
        .context("the admin credential is not text")?
        .trim()
        .to_owned())
}

async fn admin<I>(
    mut client: AuthorityAdminClient<tonic::service::interceptor::InterceptedService<Channel, I>>,
    command: &Command,
) -> anyhow::Result<()>
where
    I: tonic::service::Interceptor,
{
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    match command {
        Command::Account(AccountCommand::Create {
            name,
            plr,
            export_controlled,
        }) => {
            let a = client
                .create_smart_account(pb::CreateSmartAccountRequest {
                    name: name.clone(),
                    plr_authorized: *plr,
                    export_controlled: *export_controlled,
                })
                .await?
                .into_inner();
            println!(
                "created smart account {:?} (PLR {}, export-controlled {})",
                a.name,
                yes(a.plr_authorized),
                yes(a.export_controlled)
            );
        }
        Command::Account(AccountCommand::List) => {
            for a in client
                .list_smart_accounts(pb::ListSmartAccountsRequest {})
                .await?
                .into_inner()
                .accounts
            {
                println!(
                    "{:<32} PLR {:<3} export-controlled {}",
                    a.name,
                    yes(a.plr_authorized),
                    yes(a.export_controlled)
                );
            }
        }
        Command::VirtualAccount(VirtualAccountCommand::Create {
            smart_account,
            name,
        }) => {
            let v = client
                .create_virtual_account(pb::CreateVirtualAccountRequest {
                    smart_account: smart_account.clone(),
                    name: name.clone(),
                })
                .await?
                .into_inner();
            println!(
                "created virtual account {:?} in {:?}",
                v.name, v.smart_account
            );
        }
        Command::VirtualAccount(VirtualAccountCommand::List { smart_account }) => {
            for v in client
                .list_virtual_accounts(pb::ListVirtualAccountsRequest {
                    smart_account: smart_account.clone(),
                })
                .await?
                .into_inner()
                .accounts
            {
                println!("{}", v.name);
            }
        }
        Command::Pool(PoolCommand::Add {
            smart_account,
            virtual_account,
            tag,
            quantity,
            term_days,
            plr_capable,
        }) => {
            let term_end = term_days.map_or(0, |d| now + i64::from(d) * 86_400);
            let p = client
                .add_licenses(pb::AddLicensesRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    tag: tag.clone(),
                    quantity: *quantity,
                    term_end,
                    plr_capable: *plr_capable,
                })
                .await?
                .into_inner();
            print_pool(&p);
        }
        Command::Pool(PoolCommand::List {
            smart_account,
            virtual_account,
        }) => {
            let pools = client
                .list_pools(pb::ListPoolsRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                })
                .await?
                .into_inner()
                .pools;
            for p in &pools {
                print_pool(p);
            }
        }
        Command::Pool(PoolCommand::Transfer {
            smart_account,
            from,
            to,
            tag,
            quantity,
            force,
        }) => {
            let t = client
                .transfer(pb::TransferRequest {
                    smart_account: smart_account.clone(),
                    from_virtual_account: from.clone(),
                    to_virtual_account: to.clone(),
                    tag: tag.clone(),
                    quantity: *quantity,
                    force: *force,
                })
                .await?
                .into_inner();
            println!("transferred {quantity} x {tag} from {from:?} to {to:?}");
            t.from.iter().chain(t.to.iter()).for_each(print_pool);
            for p in t.from.iter().filter(|p| p.in_use > p.quantity) {
                println!(
                    "{} {tag} in use beyond the pool: the devices holding them are granted less at their next authorisation",
                    p.in_use - p.quantity
                );
            }
        }
        Command::Token(TokenCommand::Create {
            smart_account,
            virtual_account,
            days,
            uses,
            export_controlled,
            description,
        }) => {
            let t = client
                .create_token(pb::CreateTokenRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    validity_days: *days,
                    max_uses: *uses,
                    export_controlled: *export_controlled,
                    description: description.clone(),
                })
                .await?
                .into_inner();
            println!("{}", t.secret);
            eprintln!(
                "token {} for {:?}/{:?}: valid {days} days, {uses} use(s); the line above is shown only once",
                t.id, t.smart_account, t.virtual_account
            );
        }
        Command::Token(TokenCommand::List {
            smart_account,
            virtual_account,
        }) => {
            let tokens = client
                .list_tokens(pb::ListTokensRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                })
                .await?
                .into_inner()
                .tokens;
            for t in tokens {
                let state = if t.revoked {
                    "revoked"
                } else if now >= t.expires_at {
                    "expired"
                } else if t.uses >= t.max_uses {
                    "used up"
                } else {
                    "active"
                };
                println!(
                    "{}  {:<8} uses {}/{}  expires {}  {}",
                    t.id, state, t.uses, t.max_uses, t.expires_at, t.description
                );
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let t = client
                .revoke_token(pb::RevokeTokenRequest { id: id.clone() })
                .await?
                .into_inner();
            println!("revoked token {}", t.id);
        }
        Command::Instance(InstanceCommand::List {
            smart_account,
            virtual_account,
        }) => {
            let instances = client
                .list_instances(pb::ListInstancesRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                })
                .await?
                .into_inner()
                .instances;
            for i in instances {
                let udi = i.udi.unwrap_or_default();
                let grants: Vec<_> = i
                    .grants
                    .iter()
                    .map(|g| format!("{} {}/{}", g.tag, g.granted, g.requested))
                    .collect();
                let state = if i.deregistered {
                    "deregistered"
                } else {
                    "registered"
                };
                println!(
                    "{}  {}/{}  {state}  {}",
                    i.instance_id,
                    udi.product_id,
                    udi.serial,
                    grants.join(", ")
                );
            }
        }
        Command::Usage(UsageCommand::Show {
            smart_account,
            virtual_account,
            instance,
        }) => {
            let totals = client
                .get_usage(pb::GetUsageRequest {
                    smart_account: smart_account.clone().unwrap_or_default(),
                    virtual_account: virtual_account.clone().unwrap_or_default(),
                    instance_id: instance.clone().unwrap_or_default(),
                })
                .await?
                .into_inner()
                .totals;
            println!(
                "{:<32} {:<16} {:>12} {:>12} {:>8} {:>8}",
                "instance", "tag", "admitted", "rejected", "reports", "peak"
            );
            for t in totals {
                println!(
                    "{:<32} {:<16} {:>12} {:>12} {:>8} {:>8}",
                    t.instance_id, t.tag, t.admitted, t.rejected, t.reports, t.peak_tps
                );
            }
        }
        Command::Audit(AuditCommand::List { after, limit }) => {
            for e in client
                .list_audit(pb::ListAuditRequest {
                    after_id: *after,
                    limit: *limit,
                })
                .await?
                .into_inner()
                .entries
            {
                println!(
                    "{:>6} {} {:<24} {:<24} {}",
                    e.id, e.at, e.actor, e.action, e.detail
                );
            }
        }
        Command::Reservation(ReservationCommand::Plr {
            smart_account,
            virtual_account,
            request_code,
        }) => {
            let r = client
                .authorize_reservation(pb::AuthorizeReservationRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    request_code: request_code.clone(),
                    kind: pb::ReservationKind::Permanent as i32,
                    licenses: Vec::new(),
                })
                .await?
                .into_inner();
            print_reservation_code(&r);
        }
        Command::Reservation(ReservationCommand::Slr {
            smart_account,
            virtual_account,
            request_code,
            licences,
        }) => {
            let licenses = licences
                .iter()
                .map(|l| {
                    let (tag, count) = l
                        .split_once('=')
                        .with_context(|| format!("{l:?} is not TAG=COUNT"))?;
                    let count = count
                        .parse()
                        .with_context(|| format!("{l:?}: the count is not a whole number"))?;
                    Ok(pb::LicenseCount {
                        tag: tag.to_owned(),
                        count,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            let r = client
                .authorize_reservation(pb::AuthorizeReservationRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    request_code: request_code.clone(),
                    kind: pb::ReservationKind::Specific as i32,
                    licenses,
                })
                .await?
                .into_inner();
            print_reservation_code(&r);
        }
        Command::Reservation(ReservationCommand::Return { return_code }) => {
            let answer = client
                .return_reservation(pb::ReturnReservationRequest {
                    return_code: return_code.clone(),
                })
                .await?
                .into_inner();
            let r = answer.reservation.unwrap_or_default();
            let udi = r.udi.unwrap_or_default();
            if answer.already_returned {
                println!(
                    "reservation {} of {}/{} was returned before; nothing changed",
                    r.id, udi.product_id, udi.serial
                );
            } else {
                println!(
                    "reservation {} of {}/{} returned; its licences are back in {}/{}",
                    r.id, udi.product_id, udi.serial, r.smart_account, r.virtual_account
                );
            }
        }
        Command::Reservation(ReservationCommand::List { smart_account }) => {
            for r in client
                .list_reservations(pb::ListReservationsRequest {
                    smart_account: smart_account.clone(),
                })
                .await?
                .into_inner()
                .reservations
            {
                let udi = r.udi.clone().unwrap_or_default();
                let licences: Vec<String> = r
                    .licenses
                    .iter()
                    .map(|l| format!("{}={}", l.tag, l.count))
                    .collect();
                println!(
                    "{:>4} {:<9} {}/{} request {} in {}  {}  {}",
                    r.id,
                    kind_name(r.kind),
                    udi.product_id,
                    udi.serial,
                    r.request_sequence,
                    r.virtual_account,
                    licences.join(" "),
                    if r.returned_at == 0 {
                        "held".to_owned()
                    } else {
                        format!("returned {}", r.returned_at)
                    }
                );
            }
        }
        Command::Init | Command::Serve { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}

fn kind_name(kind: i32) -> &'static str {
    if kind == pb::ReservationKind::Permanent as i32 {
        "PLR"
    } else {
        "SLR"
    }
}

fn print_reservation_code(r: &pb::Reservation) {
    let udi = r.udi.clone().unwrap_or_default();
    eprintln!(
        "{} reservation {} for {}/{} (request {}) in {}/{}; the device confirms with {}",
        kind_name(r.kind),
        r.id,
        udi.product_id,
        udi.serial,
        r.request_sequence,
        r.smart_account,
        r.virtual_account,
        r.confirmation_code
    );
    // The code alone on stdout, to copy or pipe.
    println!("{}", r.authorization_code);
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn print_pool(p: &pb::Pool) {
    let term = if p.term_end == 0 {
        "perpetual".to_owned()
    } else {
        format!("term ends {}", p.term_end)
    };
    println!(
        "{}/{} {:<16} {:>6} in pool {:>6} in use  {term}{}",
        p.smart_account,
        p.virtual_account,
        p.tag,
        p.quantity,
        p.in_use,
        if p.plr_capable { "  PLR-capable" } else { "" }
    );
}
