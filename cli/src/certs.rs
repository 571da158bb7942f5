//! `torsion certs`: the ACME certificates of a txacme: directory, once, outside the server.

use std::process::ExitCode;
use std::time::SystemTime;

use torsion_endpoints::Endpoint;
use torsion_endpoints::acme::{
    AcmeSettings, CertificateDirectory, CertificateState, LETS_ENCRYPT, NameStatus,
    is_issuable_name,
};

use crate::args::{CertsAction, CertsArgs};
use crate::error::ConfigError;

/// The ACME settings from `torsion certs`' options, checked as the keywords of the same
/// names are.
fn acme_settings(args: &CertsArgs) -> Result<AcmeSettings, ConfigError> {
    let mut settings = AcmeSettings::new(LETS_ENCRYPT);
    let path =
        |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    let (cacert, store_ca) = (path(&args.cacert), path(&args.store_ca));
    for (setting, option, value) in [
        ("directory", "directory", &args.directory),
        ("email", "email", &args.email),
        ("cacert", "cacert", &cacert),
        ("challenge", "challenge", &args.challenge),
        ("domains", "domains", &args.domains),
        ("timeout", "timeout", &args.timeout),
        ("store", "store", &args.store),
        ("prefix", "prefix", &args.prefix),
        ("storeca", "store-ca", &store_ca),
        ("lock", "lock", &args.lock),
    ] {
        if let Some(value) = value {
            settings
                .set(setting, value)
                .map_err(|err| format!("--{}", err.to_string().replacen(setting, option, 1)))?;
        }
    }
    Ok(settings)
}

/// Runs `torsion certs`: `Ok` with the exit status (1 when an issuance failed), `Err` for
/// a bad option or directory.
pub(crate) fn certs(args: CertsArgs) -> Result<ExitCode, ConfigError> {
    // Every option is checked before anything touches the disk or the network.
    let settings = acme_settings(&args)?;
    let listen = args.listen.as_deref().map(Endpoint::parse).transpose()?;
    if let CertsAction::Issue { names } = &args.action
        && let Some(bad) = names.iter().find(|n| !is_issuable_name(n))
    {
        return Err(ConfigError::Option(format!(
            "{bad:?} is not a host name that can be issued (such as www.example.com; no wildcards)"
        )));
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the async runtime: {err}"))
    };
    let names = match &args.action {
        CertsAction::Status => {
            // With a fleet's store the directory need not exist yet: it is filled from it.
            let directory = if settings.store.is_some() {
                let directory = CertificateDirectory::open(&args.path, settings)?;
                runtime()?.block_on(directory.refresh())?;
                directory
            } else {
                CertificateDirectory::open_existing(&args.path, settings)?
            };
            print!("{}", status_table(&directory.status(), SystemTime::now()));
            return Ok(ExitCode::SUCCESS);
        }
        CertsAction::Issue { names } => Some(names),
        CertsAction::Renew => None,
    };
    let directory = CertificateDirectory::open(&args.path, settings)?;
    // A fleet's servers answer its challenges; otherwise this process must.
    let listen = match listen {
        Some(listen) => Some(listen),
        None if directory.has_fleet() => None,
        None => Some(directory.default_listen()),
    };
    let outcomes = runtime()?.block_on(async {
        if directory.has_fleet() {
            directory.refresh().await?;
        }
        match names {
            Some(names) => directory.issue(names, listen.as_ref()).await,
            None => directory.renew(listen.as_ref()).await,
        }
    })?;
    if outcomes.is_empty() {
        println!(
            "nothing to do: every certificate in {} is current",
            directory.path().display()
        );
    }
    let mut failed = false;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(facts) => println!(
                "{name}: issued by {}, valid until {} ({} days)",
                facts.issuer,
                utc(facts.not_after),
                facts.days_left(SystemTime::now())
            ),
            Err(err) => {
                failed = true;
                eprintln!("error: {err}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `torsion certs status` output: one line per name, in columns.
fn status_table(names: &[NameStatus], now: SystemTime) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "ISSUER".to_owned(),
        "EXPIRES".to_owned(),
        "DAYS LEFT".to_owned(),
        "NEXT RENEWAL".to_owned(),
    ]];
    for status in names {
        let when = |at: SystemTime| if at <= now { "now".to_owned() } else { utc(at) };
        rows.push(match &status.state {
            CertificateState::Present(facts) => [
                status.name.clone(),
                facts.issuer.clone(),
                utc(facts.not_after),
                facts.days_left(now).to_string(),
                when(status.renew_at),
            ],
            CertificateState::Requested => row(&status.name, "(requested: empty file)", "now"),
            CertificateState::Missing => row(&status.name, "(no file: from --domains)", "now"),
            CertificateState::Unreadable(reason) => {
                row(&status.name, &format!("(unusable: {reason})"), "now")
            }
        });
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn row(name: &str, issuer: &str, renewal: &str) -> [String; 5] {
    [
        name.to_owned(),
        issuer.to_owned(),
        "-".into(),
        "-".into(),
        renewal.to_owned(),
    ]
}

/// `2026-11-21 13:45 UTC`.
fn utc(at: SystemTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from(at)
        .format(&format)
        .unwrap_or_else(|_| "?".into())
}
