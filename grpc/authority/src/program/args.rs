//! The command line: `init`, `serve`, and the admin commands by noun and verb.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "entitle-authority",
    version,
    about = "The entitle licence authority and its admin CLI"
)]
pub(super) struct Cli {
    /// The authority's admin service to administer.
    #[arg(
        long,
        global = true,
        env = "ENTITLE_AUTHORITY",
        default_value = "https://127.0.0.1:7172"
    )]
    pub(super) authority: String,
    /// The CA the admin service's certificate is checked against (default: the private
    /// CA of --data, `DIR/tls/ca.pem`, else the system's roots).
    #[arg(long, global = true, env = "ENTITLE_AUTHORITY_CA")]
    pub(super) ca: Option<PathBuf>,
    /// The authority's data directory (for init and serve, and to find the admin credential).
    #[arg(long, global = true, env = "ENTITLE_DATA")]
    pub(super) data: Option<PathBuf>,
    /// A file holding the admin credential.
    #[arg(long, global = true)]
    pub(super) credential_file: Option<PathBuf>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Creates the store, the signing key, the admin credential and the TLS identity in
    /// --data.
    Init {
        /// A host name or address devices and admins reach the authority by, for the
        /// server certificate of the private CA (repeatable; localhost, 127.0.0.1 and ::1
        /// are always in it).
        #[arg(long = "tls-name", conflicts_with_all = ["tls_cert", "tls_key"])]
        tls_names: Vec<String>,
        /// The operator's own server certificate chain (PEM) instead of a private CA.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The store: a PostgreSQL URL (`postgres://user@host:port,host2:port/db?target_session_attrs=read-write`),
        /// kept in DIR/database.url (mode 0600) for serve. Without it, DIR/authority.db (SQLite).
        #[arg(long, env = "ENTITLE_DATABASE", hide_env_values = true)]
        database: Option<String>,
    },
    /// Serves the Authority service to devices and the AuthorityAdmin service to admins,
    /// each on its own address, both over TLS.
    Serve {
        /// The devices' address (port 0 picks a free one; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:7171")]
        listen: String,
        /// The admin service's address (loopback by default).
        #[arg(long, default_value = "127.0.0.1:7172")]
        admin_listen: String,
        /// The store, instead of the one init recorded (a PostgreSQL URL).
        #[arg(long, env = "ENTITLE_DATABASE", hide_env_values = true)]
        database: Option<String>,
        /// Also serve the web portal (HTTPS, with the authority's certificate) on this
        /// address, such as 127.0.0.1:7173.
        #[arg(long)]
        portal_listen: Option<String>,
        #[command(flatten)]
        periods: PeriodArgs,
        #[command(flatten)]
        satellite: SatelliteServeArgs,
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
    /// What each licence tag is worth (TPS per unit, policy), signed into every grant.
    #[command(subcommand)]
    Catalogue(CatalogueCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Licence reservation for devices that never call home (PLR and SLR).
    #[command(subcommand)]
    Reservation(ReservationCommand),
    /// Satellites: delegation on the cloud, installation and status on a satellite.
    #[command(subcommand)]
    Satellite(SatelliteCommand),
    /// A satellite's sync by files across an air gap.
    #[command(subcommand)]
    Sync(SyncCommand),
}

/// How `serve` runs as a satellite.
#[derive(clap::Args)]
pub(super) struct SatelliteServeArgs {
    /// cloud (the default) or satellite (needs `satellite install` first).
    #[arg(long, value_parser = ["cloud", "satellite"], default_value = "cloud")]
    pub(super) role: String,
    /// A satellite's network sync: the cloud's device address (`https://...`). Without it
    /// the satellite syncs by files only.
    #[arg(long)]
    pub(super) cloud: Option<String>,
    /// The CA file the cloud's TLS certificate is checked against (default: the system's
    /// roots).
    #[arg(long, requires = "cloud")]
    pub(super) cloud_ca: Option<PathBuf>,
    /// How often the network sync runs.
    #[arg(long, default_value_t = 3600)]
    pub(super) sync_interval_secs: u64,
    /// How long a satellite may go without a sync before it refuses devices' calls.
    #[arg(long, default_value_t = 30, conflicts_with = "sync_deadline_secs")]
    pub(super) sync_deadline_days: u32,
    #[arg(long, hide = true)]
    pub(super) sync_deadline_secs: Option<u32>,
}

#[derive(Subcommand)]
pub(super) enum SatelliteCommand {
    /// On the cloud: delegates virtual accounts to a satellite's key and writes the
    /// delegation file to install on it.
    Add {
        name: String,
        /// The satellite's public key (its `authority.pub`).
        #[arg(long)]
        key: PathBuf,
        /// A virtual account it serves, as SMART/VIRTUAL (repeatable).
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
        /// Days the delegation is valid.
        #[arg(long, default_value_t = 365, conflicts_with = "secs")]
        days: u32,
        #[arg(long, hide = true)]
        secs: Option<u32>,
        /// Where to write the delegation.
        #[arg(long)]
        out: PathBuf,
    },
    /// On the cloud: revokes a satellite's delegation; devices refuse what it signs once
    /// they learn of it.
    Revoke { name: String },
    /// On the cloud: lists satellites and their last syncs.
    List,
    /// On a satellite (offline, in --data): installs the cloud's delegation.
    Install {
        #[arg(long)]
        delegation: PathBuf,
        /// The cloud's public key (its `authority.pub`).
        #[arg(long)]
        cloud_key: PathBuf,
    },
    /// On a satellite: its delegation, the time since its last sync and the deadline.
    Status,
}

#[derive(Subcommand)]
pub(super) enum SyncCommand {
    /// On a satellite: writes the next sync request to a file to carry to the cloud.
    Export {
        #[arg(long)]
        file: PathBuf,
    },
    /// On the cloud: takes a satellite's request file and writes the answer file
    /// (--answer). On a satellite: takes the cloud's answer file.
    Import {
        file: PathBuf,
        /// On the cloud: where to write the answer for the satellite.
        #[arg(long)]
        answer: Option<PathBuf>,
    },
}

/// The periods the authority signs into what it issues; each in days, or in seconds with
/// the `-secs` form (for labs and tests).
#[derive(clap::Args)]
pub(super) struct PeriodArgs {
    /// How long an ID certificate is valid.
    #[arg(long, default_value_t = 365, conflicts_with = "certificate_secs")]
    pub(super) certificate_days: u32,
    #[arg(long, hide = true)]
    pub(super) certificate_secs: Option<u32>,
    /// How often devices renew their authorisation (sent as `next_renewal_at`).
    #[arg(long, default_value_t = 30, conflicts_with = "renewal_secs")]
    pub(super) renewal_days: u32,
    #[arg(long)]
    pub(super) renewal_secs: Option<u32>,
    /// How long a device may go without contact after an authorisation (`deadline_at`).
    #[arg(long, default_value_t = 90, conflicts_with = "deadline_secs")]
    pub(super) deadline_days: u32,
    #[arg(long)]
    pub(super) deadline_secs: Option<u32>,
    /// How long past its deadline a silent device keeps its licences; then they go back to
    /// the pool and its instance shows EXPIRED.
    #[arg(long, default_value_t = 30, conflicts_with = "release_grace_secs")]
    pub(super) release_grace_days: u32,
    #[arg(long)]
    pub(super) release_grace_secs: Option<u32>,
}

impl PeriodArgs {
    /// The periods, in seconds.
    pub(super) fn periods(&self) -> crate::Periods {
        let pick = |secs: Option<u32>, days: u32| secs.map_or(i64::from(days) * 86_400, i64::from);
        crate::Periods {
            certificate: pick(self.certificate_secs, self.certificate_days),
            renewal: pick(self.renewal_secs, self.renewal_days),
            deadline: pick(self.deadline_secs, self.deadline_days),
            release_grace: pick(self.release_grace_secs, self.release_grace_days),
        }
    }
}

#[derive(Subcommand)]
pub(super) enum ReservationCommand {
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
pub(super) enum AccountCommand {
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
pub(super) enum VirtualAccountCommand {
    /// Creates a virtual account.
    Create { smart_account: String, name: String },
    /// Lists the virtual accounts of a smart account.
    List { smart_account: String },
}

#[derive(Subcommand)]
pub(super) enum PoolCommand {
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
        /// What one unit of the tag is worth, for every account (default: as set before,
        /// or 100).
        #[arg(long)]
        tps_per_unit: Option<u64>,
        /// How devices enforce the tag: hard, steady-state or monitor (default: as set
        /// before, or hard).
        #[arg(long, value_parser = ["hard", "steady-state", "monitor"])]
        policy: Option<String>,
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
pub(super) enum TokenCommand {
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
pub(super) enum InstanceCommand {
    /// Lists the product instances of a virtual account.
    List {
        smart_account: String,
        virtual_account: String,
    },
    /// Frees a dead device's licences at once; its UDI may register again.
    Remove {
        smart_account: String,
        virtual_account: String,
        instance_id: String,
    },
    /// Lets the next registration of the instance's device replace it though it is in
    /// contact (a device whose key was lost). Without it, a registration of a UDI in
    /// contact needs proof from its key.
    AllowReplace {
        smart_account: String,
        virtual_account: String,
        instance_id: String,
    },
}

#[derive(Subcommand)]
pub(super) enum CatalogueCommand {
    /// Sets what one unit of a licence tag is worth for every account (a tag never set:
    /// 100 TPS per unit, hard); devices get it at their next authorisation.
    Set {
        tag: String,
        #[arg(long)]
        tps_per_unit: Option<u64>,
        #[arg(long, value_parser = ["hard", "steady-state", "monitor"])]
        policy: Option<String>,
    },
    /// Lists the tags the catalogue names.
    List,
}

#[derive(Subcommand)]
pub(super) enum UsageCommand {
    /// Shows usage totals of a virtual account or one instance.
    Show {
        smart_account: Option<String>,
        virtual_account: Option<String>,
        #[arg(long)]
        instance: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Lists audit entries, oldest first.
    List {
        /// Only entries after this id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only entries of this smart account (its devices' and the admin's on it).
        #[arg(long)]
        account: Option<String>,
        /// Only entries of this product instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only this action (`instance.register`) or family of actions (`instance`).
        #[arg(long)]
        kind: Option<String>,
    },
}
