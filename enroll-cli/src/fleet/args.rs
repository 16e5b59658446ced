//! The command line of `pam-totp store ...` (fleet mode), declared beside the verbs
//! in cli.rs so that help, man pages and completions come from one place.

use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const STORE_LONG: &str = "\
Sets up and manages the fleet store (needs --store FILE or PAM_TOTP_STORE): the schema and its
migrations (`init`, as a PostgreSQL superuser), the hosts that may ask it (`add-host`,
`revoke-host`, `hosts`) and the fleet-wide throttle (`settings`). The other verbs (enroll,
activate, status, list, disable, unlock, recovery, doctor) act on the store too when --store is
given; the policy stays a per-host file, but its throttle is replaced by `store settings`.

Example, on the database server as the postgres user (store.toml with `socket =
\"/var/run/postgresql\"`, `role = \"postgres\"`):
  pam-totp --store /var/lib/postgresql/init.toml store init \\
      --key-file /etc/postgresql/pam-totp.key
Then, as an admin (store.toml with a role in pam_totp_admin), for each host:
  pam-totp --store admin.toml store add-host web-01 --ca-cert ca.crt --ca-key ca.key \\
      --out web-01 --address 10.0.0.5:5432 --server-name db.example";

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create or upgrade the schema (superuser): apply the migrations not applied yet
    #[command(long_about = INIT_LONG)]
    Init(InitArgs),
    /// Let a host ask the store: its role, and optionally its certificate and store.toml
    #[command(name = "add-host", long_about = ADD_HOST_LONG)]
    AddHost(AddHostArgs),
    /// Stop a host from logging in to the store (its role is kept for the audit)
    #[command(name = "revoke-host")]
    RevokeHost(HostNameArg),
    /// List the hosts: added, revoked, last seen
    Hosts(JsonArg),
    /// Show or change the fleet-wide throttle (replaces the policy's [throttle]) and window
    Settings(SettingsArgs),
}

const INIT_LONG: &str = "\
Applies the schema migrations of this pam-totp version that the database does not have yet,
each in one transaction, and prints them (a second run applies nothing). Needs a superuser
role in store.toml, e.g. the postgres user over the server's unix socket. With --key-file it
also records the key file that encrypts the secrets at rest (once, before the first user): the
file must exist on every server of the cluster, owned by the server's OS user, mode 0600, with
at least 32 random characters (`openssl rand -hex 32`).";

const ADD_HOST_LONG: &str = "\
Creates the database role NAME (a member of pam_totp_host, no password) that the host logs in
as with a client certificate whose CN is NAME; a revoked host is re-enabled. NAME: lower-case
letters, digits, '.' and '-', at most 63, starting with a letter or digit.

With --ca-cert, --ca-key and --out it also makes what the host needs, in DIR: NAME.key (a new
P-256 key, 0600), NAME.crt (CN=NAME, signed by the CA, valid 825 days, 0644), ca.crt (a copy of
--ca-cert, 0644) and store.toml (0600) naming the --address list (default: the addresses of
--store's own file), --server-name, this database and role NAME, with paths under
/etc/pam-totp/. Copy DIR's files to the host's /etc/pam-totp/ (root:root, modes kept). The
server needs a `hostssl DATABASE NAME ADDRESS/32 cert` line in pg_hba.conf.";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The key file on the database server(s), recorded once (absolute path)
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HostNameArg {
    /// The host's role name (the CN of its certificate)
    pub name: String,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddHostArgs {
    /// The host's role name (the CN of its certificate)
    pub name: String,
    /// The CA certificate (PEM) that signs host certificates (the server's ssl_ca_file)
    #[arg(long, value_name = "FILE", requires_all = ["ca_key", "out"])]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM)
    #[arg(long, value_name = "FILE", requires_all = ["ca_cert", "out"])]
    pub ca_key: Option<PathBuf>,
    /// Directory for the host's files (created 0700 if missing)
    #[arg(long, value_name = "DIR", requires_all = ["ca_cert", "ca_key"])]
    pub out: Option<PathBuf>,
    /// A server address for the host's store.toml, IP:PORT, tried in order (repeatable)
    /// [default: the addresses of --store's file]
    #[arg(long, value_name = "IP:PORT", requires = "out")]
    pub address: Vec<SocketAddr>,
    /// The name the server's certificate carries [default: --store's server_name, else the
    /// IP address connected to]
    #[arg(long, value_name = "NAME", requires = "out")]
    pub server_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Consecutive wrong codes before the lock
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub attempts: Option<i32>,
    /// First lock, in seconds (doubles with each further wrong code)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i32).range(1..=86400))]
    pub lock_seconds: Option<i32>,
    /// Longest lock, in seconds
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i32).range(1..=86400))]
    pub max_lock_seconds: Option<i32>,
    /// The widest window (steps either side) a host may ask for (module option window=)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=10))]
    pub max_window: Option<i32>,
    /// How long a burned recovery code counts as a replay (not counted) rather than wrong
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i32).range(0..=86400))]
    pub recovery_replay_seconds: Option<i32>,
    /// Print one JSON document on stdout: the settings (after the change)
    #[arg(long)]
    pub json: bool,
}
