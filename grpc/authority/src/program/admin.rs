//! The admin commands: each a call of the `AuthorityAdmin` service, and what it prints.

use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use tonic::transport::Channel;

use anyhow::Context as _;

use super::args::*;

pub(super) async fn admin<I>(
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
            tps_per_unit,
            policy,
        }) => {
            let term_end = term_days.map_or(0, |d| now + i64::from(d) * 86_400);
            let policy = policy_of(policy.as_deref());
            if *tps_per_unit == Some(0) {
                anyhow::bail!("--tps-per-unit must be at least 1");
            }
            if tps_per_unit.is_some() || policy != pb::GrantPolicy::Unspecified {
                let e = client
                    .set_catalogue(pb::CatalogueEntry {
                        tag: tag.clone(),
                        tps_per_unit: tps_per_unit.unwrap_or(0),
                        policy: policy as i32,
                    })
                    .await?
                    .into_inner();
                print_worth(&e);
            }
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
                let state = if i.removed {
                    "removed"
                } else if i.deregistered {
                    "deregistered"
                } else if i.expired_at != 0 {
                    "EXPIRED"
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
        Command::Instance(InstanceCommand::Remove {
            smart_account,
            virtual_account,
            instance_id,
        }) => {
            let i = client
                .remove_instance(pb::InstanceRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    instance_id: instance_id.clone(),
                })
                .await?
                .into_inner();
            let udi = i.udi.unwrap_or_default();
            println!(
                "removed instance {} ({}/{}); its licences are back in {smart_account}/{virtual_account}",
                i.instance_id, udi.product_id, udi.serial
            );
        }
        Command::Instance(InstanceCommand::AllowReplace {
            smart_account,
            virtual_account,
            instance_id,
        }) => {
            let i = client
                .allow_replace(pb::InstanceRequest {
                    smart_account: smart_account.clone(),
                    virtual_account: virtual_account.clone(),
                    instance_id: instance_id.clone(),
                })
                .await?
                .into_inner();
            let udi = i.udi.unwrap_or_default();
            println!(
                "the next registration of {}/{} in {smart_account}/{virtual_account} replaces instance {}",
                udi.product_id, udi.serial, i.instance_id
            );
        }
        Command::Catalogue(CatalogueCommand::Set {
            tag,
            tps_per_unit,
            policy,
        }) => {
            let e = client
                .set_catalogue(pb::CatalogueEntry {
                    tag: tag.clone(),
                    tps_per_unit: tps_per_unit.unwrap_or(0),
                    policy: policy_of(policy.as_deref()) as i32,
                })
                .await?
                .into_inner();
            print_worth(&e);
        }
        Command::Catalogue(CatalogueCommand::List) => {
            for e in client
                .list_catalogue(pb::ListCatalogueRequest {})
                .await?
                .into_inner()
                .entries
            {
                print_worth(&e);
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
        Command::Audit(AuditCommand::List {
            after,
            limit,
            account,
            instance,
            kind,
        }) => {
            for e in client
                .list_audit(pb::ListAuditRequest {
                    after_id: *after,
                    limit: *limit,
                    smart_account: account.clone().unwrap_or_default(),
                    instance_id: instance.clone().unwrap_or_default(),
                    kind: kind.clone().unwrap_or_default(),
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
            if r.id == 0 {
                println!(
                    "the return of {}/{} (request {}) is queued on this satellite for the cloud's next sync",
                    udi.product_id, udi.serial, r.request_sequence
                );
            } else if answer.already_returned {
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
        Command::Satellite(SatelliteCommand::Add {
            name,
            key,
            accounts,
            days,
            secs,
            out,
        }) => {
            let satellite_public_key = std::fs::read(key)
                .with_context(|| format!("cannot read the satellite's key {}", key.display()))?;
            let accounts = accounts
                .iter()
                .map(|a| match a.split_once('/') {
                    Some((sa, va)) if !sa.is_empty() && !va.is_empty() => Ok(pb::AccountName {
                        smart_account: sa.to_owned(),
                        virtual_account: va.to_owned(),
                    }),
                    _ => Err(anyhow::anyhow!("--account {a:?} is not SMART/VIRTUAL")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let signed = client
                .delegate_satellite(pb::DelegateSatelliteRequest {
                    name: name.clone(),
                    satellite_public_key,
                    accounts,
                    validity_days: *days,
                    validity_secs: secs.unwrap_or(0),
                })
                .await?
                .into_inner();
            write_file(out, &prost::Message::encode_to_vec(&signed))?;
            let d: pb::Delegation = prost::Message::decode(signed.body.as_slice())?;
            println!(
                "delegated to satellite {:?} (serial {}, until unix {}): {}; install {} on it",
                d.satellite,
                d.serial,
                d.expires_at,
                account_names(&d.accounts),
                out.display()
            );
        }
        Command::Satellite(SatelliteCommand::Revoke { name }) => {
            let s = client
                .revoke_satellite(pb::RevokeSatelliteRequest { name: name.clone() })
                .await?
                .into_inner();
            println!("revoked satellite {:?} (serial {})", s.name, s.serial);
        }
        Command::Satellite(SatelliteCommand::List) => {
            for s in client
                .list_satellites(pb::ListSatellitesRequest {})
                .await?
                .into_inner()
                .satellites
            {
                let state = if s.revoked_at != 0 {
                    "REVOKED".to_owned()
                } else if s.expires_at <= now {
                    "EXPIRED".to_owned()
                } else {
                    "active".to_owned()
                };
                let synced = if s.last_sync_at == 0 {
                    "never synced".to_owned()
                } else {
                    format!("sync {} {} ago", s.last_sequence, ago(now - s.last_sync_at))
                };
                println!(
                    "{:<24} serial {:<4} {:<8} {}; {}",
                    s.name,
                    s.serial,
                    state,
                    account_names(&s.accounts),
                    synced
                );
            }
        }
        Command::Satellite(SatelliteCommand::Status) => {
            let s = client
                .satellite_status(pb::SatelliteStatusRequest {})
                .await?
                .into_inner();
            println!(
                "satellite {:?}, delegation {}: {}",
                s.name,
                s.serial,
                account_names(&s.accounts)
            );
            println!("delegation expires in {}", ago(s.expires_at - now));
            if s.last_sequence == 0 {
                println!("never synced with the cloud");
            } else {
                println!(
                    "last sync: answer to sync {}, {} ago",
                    s.last_sequence,
                    ago(now - s.last_sync_at)
                );
            }
            println!("sync deadline in {}", ago(s.sync_deadline_at - now));
            println!("reports waiting for the cloud: {}", s.reports_waiting);
            if !s.warning.is_empty() {
                println!("WARNING: {}", s.warning);
            }
        }
        Command::Sync(SyncCommand::Export { file }) => {
            let exported = client
                .export_sync(pb::ExportSyncRequest {})
                .await?
                .into_inner();
            write_file(file, &prost::Message::encode_to_vec(&exported))?;
            if let Some(pb::sync_file::Content::Request(signed)) = &exported.content {
                let r: pb::SyncRequest = prost::Message::decode(signed.body.as_slice())?;
                println!(
                    "wrote sync {} of satellite {:?} to {}: {} instances, {} reports; import it on the cloud",
                    r.sequence,
                    r.satellite,
                    file.display(),
                    r.instances.len(),
                    r.reports.len()
                );
            }
        }
        Command::Sync(SyncCommand::Import { file, answer }) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let sync_file: pb::SyncFile = prost::Message::decode(bytes.as_slice())
                .ok()
                .filter(|f: &pb::SyncFile| f.content.is_some())
                .with_context(|| format!("{} is not a sync file", file.display()))?;
            let is_request = matches!(sync_file.content, Some(pb::sync_file::Content::Request(_)));
            if is_request && answer.is_none() {
                anyhow::bail!(
                    "{} is a satellite's sync request: import it on the cloud, with --answer FILE for the answer",
                    file.display()
                );
            }
            let imported = client.import_sync(sync_file).await?.into_inner();
            println!("{}", imported.summary);
            if let (Some(out), Some(reply)) = (answer, &imported.answer) {
                write_file(out, &prost::Message::encode_to_vec(reply))?;
                println!(
                    "wrote the answer to {}; import it on the satellite",
                    out.display()
                );
            }
        }
        Command::Init { .. }
        | Command::Serve { .. }
        | Command::Satellite(SatelliteCommand::Install { .. }) => {
            unreachable!("handled before connecting")
        }
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
    if r.authorization_code.is_empty() {
        println!(
            "{} reservation for {}/{} (request {}) queued on this satellite: the cloud makes the code at the next sync; `reservation list {}` shows it then",
            kind_name(r.kind),
            udi.product_id,
            udi.serial,
            r.request_sequence,
            r.smart_account
        );
        return;
    }
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

fn policy_of(name: Option<&str>) -> pb::GrantPolicy {
    match name {
        None => pb::GrantPolicy::Unspecified,
        Some("steady-state") => pb::GrantPolicy::SteadyState,
        Some("monitor") => pb::GrantPolicy::Monitor,
        Some(_) => pb::GrantPolicy::Hard,
    }
}

fn print_worth(e: &pb::CatalogueEntry) {
    let policy = pb::GrantPolicy::try_from(e.policy).unwrap_or(pb::GrantPolicy::Hard);
    println!(
        "{:<16} {} TPS per unit, {}",
        e.tag,
        e.tps_per_unit,
        crate::ledger::policy_name(policy)
    );
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
    let policy = pb::GrantPolicy::try_from(p.policy).unwrap_or(pb::GrantPolicy::Hard);
    println!(
        "{}/{} {:<16} {:>6} in pool {:>6} in use  {term}  {} TPS/unit {}{}",
        p.smart_account,
        p.virtual_account,
        p.tag,
        p.quantity,
        p.in_use,
        p.tps_per_unit,
        crate::ledger::policy_name(policy),
        if p.plr_capable { "  PLR-capable" } else { "" }
    );
}

/// Writes a file the operator carries (mode 0600: sync files hold token hashes).
fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    entitle_proto::signing::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn account_names(accounts: &[pb::AccountName]) -> String {
    accounts
        .iter()
        .map(|a| format!("{}/{}", a.smart_account, a.virtual_account))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A span of seconds as days and hours (negative: "overdue").
fn ago(secs: i64) -> String {
    if secs < 0 {
        return format!("overdue by {}", ago(-secs));
    }
    match secs {
        s if s < 3_600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}
