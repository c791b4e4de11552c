//! The `eventspan` command line.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use eventspan::engine::EngineConfig;
use eventspan::export::policy::Entry;
use eventspan::otlp::cluster_name::ClusterName;

/// The engine and replay allocate many small, short-lived strings and spans, which mimalloc
/// serves faster than the system allocator; the benches use it too, so their figures are the
/// binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use eventspan::watch::Scope;
use eventspan::{record, replay};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "eventspan",
    version,
    about = "Turns Kubernetes Events into OpenTelemetry traces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn a recorded stream of Kubernetes objects and events into traces, with no cluster.
    ///
    /// Reads watch events as `kubectl get --watch --output-watch-events -o json` or `eventspan
    /// record` write them, bare objects, Lists, or multi-document YAML. Exits 0 when all input was
    /// used, 1 when some was skipped or refused (each skip is reported on stderr with its line,
    /// refusals by reason), 2 on errors.
    Replay(ReplayArgs),
    /// Capture a live stream of events, and the objects they involve and their owners, as lines
    /// `eventspan replay` reads. Uses the kubeconfig (KUBECONFIG) or in-cluster credentials.
    Record(RecordArgs),
    /// Follow the next (or current) rollout of a Deployment, StatefulSet or DaemonSet as a trace
    /// tree, redrawn as it grows, with the kubeconfig's credentials (no operator needed).
    ///
    /// Exits as `kubectl rollout status` does: 0 when rolled out, 1 when the rollout failed
    /// (progress deadline exceeded), the timeout ran out or the object was deleted. Without a
    /// terminal it prints the final tree once. Installed as `kubectl-eventspan` on the PATH, it
    /// runs as `kubectl eventspan watch ...`.
    Watch(WatchArgs),
    /// Print the TraceSession CustomResourceDefinition (YAML), as crds/ holds it.
    Crd,
    /// Run the operator: TraceSessions drive shared watchers, the engine and OTLP exporters.
    // Boxed: the operator's flags outweigh every other command's.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The namespace the operator runs in: its Lease is there, and sessions there are admin.
    #[arg(long, env = "POD_NAMESPACE", default_value = "eventspan-system")]
    namespace: String,
    /// A namespace whose sessions may trace other namespaces; repeat for several. Default: the
    /// operator's namespace.
    #[arg(long = "admin-namespace")]
    admin_namespaces: Vec<String>,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// Take a Lease so that only one replica runs sessions.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, default_value = "eventspan-leader")]
    lease_name: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The smallest correlation window; sessions may ask for longer ones.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    window: Duration,
    /// How long a span whose end no later event tells waits for more activity.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizon: Duration,
    /// Events already older than this when a watch starts are not traced.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    max_event_age: Duration,
    /// How often, at most, the leader writes the engines' checkpoints (the spans exported last)
    /// to ConfigMaps in its namespace, so a successor neither re-sends nor loses spans. 0: never
    /// (a successor then re-sends what was exported within --max-event-age).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    checkpoint_interval: Duration,
    /// Spans each exporter may hold while its endpoint is unreachable.
    #[arg(long, default_value_t = 10_000)]
    exporter_queue: usize,
    /// The longest wait between retries of a failing export.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    exporter_max_backoff: Duration,
    /// Exporters may connect only where one of these matches: a CIDR (`10.0.0.0/8`), an IP, a
    /// host name or `*.suffix`; repeat (or separate with commas) for several. Default: anywhere
    /// not denied.
    #[arg(
        long = "exporter-allow",
        env = "EVENTSPAN_EXPORTER_ALLOW",
        value_delimiter = ','
    )]
    exporter_allow: Vec<Entry>,
    /// Exporters may never connect where one of these matches (same forms as
    /// `--exporter-allow`); deny wins over allow. Checked for every address a name resolves to.
    #[arg(
        long = "exporter-deny",
        env = "EVENTSPAN_EXPORTER_DENY",
        value_delimiter = ','
    )]
    exporter_deny: Vec<Entry>,
    /// Also deny the built-in destinations: link-local 169.254.0.0/16 and fe80::/10,
    /// fd00:ec2::254, metadata.google.internal, metadata.goog (cloud metadata services).
    #[arg(
        long,
        env = "EVENTSPAN_EXPORTER_DEFAULT_DENY",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    exporter_default_deny: bool,
    /// Send headers from Secrets (`headersFrom`) to http:// endpoints too, in the clear.
    #[arg(long, env = "EVENTSPAN_ALLOW_PLAINTEXT_SECRET_HEADERS")]
    allow_plaintext_secret_headers: bool,
    /// The longest `spec.window` a session may ask for; at most 60s, the schema's bound.
    #[arg(long, default_value = "60s", value_parser = parse_session_window)]
    max_session_window: Duration,
    /// Sessions that may run in one namespace; the oldest win.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions_per_namespace: u32,
    /// Exporters one session may have; at most 8, the schema's bound.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
    max_exporters_per_session: u32,
    /// The cluster's name, as the Resource attribute `k8s.cluster.name` of every span and log
    /// record of every session: what keeps traces from many clusters apart in one backend.
    /// 1 to 100 ASCII letters, digits, '-', '_' and '.', beginning and ending with a letter or
    /// digit. Default: none (the attribute is not set).
    #[arg(long, env = "EVENTSPAN_CLUSTER_NAME")]
    cluster_name: Option<ClusterName>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// A namespace to record; repeat for several. Default: all namespaces.
    #[arg(short = 'n', long = "namespace")]
    namespaces: Vec<String>,
    /// Where to write; default standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Stop after this long (otherwise on Ctrl-C or SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(clap::Args)]
struct WatchArgs {
    /// TYPE/NAME: deployment/web, statefulset/db, daemonset/agent (or deploy, sts, ds).
    target: eventspan::live::follow::Target,
    /// Default: the namespace of the kubeconfig's context.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// How long to wait before giving up (exit 1); 0 waits for ever.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    timeout: Duration,
    /// The kubeconfig to use instead of KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long)]
    context: Option<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The recording; `-` or nothing reads standard input.
    path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Tree)]
    output: Output,
    /// How long an event whose parent has not been seen yet is held.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    window: Duration,
    /// How long a span whose end no later event tells waits for more activity.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizon: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// An indented tree per trace, for people.
    Tree,
    /// OTLP/JSON, one ExportTraceServiceRequest per line and trace.
    OtlpJson,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    eventspan::duration::parse(s).map_err(|e| e.to_string())
}

/// A limit above the schema's would look like it allows what the API server still refuses.
fn parse_session_window(s: &str) -> Result<Duration, String> {
    let window = parse_duration(s)?;
    let bound = eventspan::operator::limits::SCHEMA_MAX_WINDOW;
    if window > bound {
        return Err(format!(
            "{window:?} is longer than the schema allows ({bound:?})"
        ));
    }
    Ok(window)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Crd => {
            print!("{}", eventspan::operator::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Watch(args) => {
            // Warnings only: the view owns the terminal.
            init_logging(LogFormat::Text, "warn");
            runtime().block_on(run_watch(args))
        }
        Command::Record(args) => {
            init_logging(LogFormat::Text, "info");
            runtime().block_on(run_record(args))
        }
        Command::Run(args) => {
            init_logging(args.log_format, "info");
            runtime().block_on(run_operator(*args))
        }
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run_operator(args: RunArgs) -> ExitCode {
    let admin_namespaces = if args.admin_namespaces.is_empty() {
        [args.namespace.clone()].into()
    } else {
        args.admin_namespaces.into_iter().collect()
    };
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let destinations = std::sync::Arc::new(eventspan::export::DestinationPolicy::new(
        args.exporter_allow,
        args.exporter_deny,
        args.exporter_default_deny,
    ));
    let options = eventspan::operator::run::RunOptions {
        namespace: args.namespace,
        admin_namespaces,
        listen: args.listen,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        identity,
        engine: EngineConfig {
            window: args.window,
            horizon: args.horizon,
            ..EngineConfig::default()
        },
        exporters: eventspan::export::ExporterSettings {
            queue_capacity: args.exporter_queue,
            max_backoff: args.exporter_max_backoff,
            destinations: destinations.clone(),
            ..Default::default()
        },
        exporter_policy: eventspan::operator::session::ExporterPolicy {
            destinations,
            allow_plaintext_secret_headers: args.allow_plaintext_secret_headers,
        },
        max_event_age: args.max_event_age,
        checkpoint_interval: args.checkpoint_interval,
        cluster_name: args.cluster_name,
        limits: eventspan::operator::limits::Limits {
            max_window: args.max_session_window,
            max_exporters: args.max_exporters_per_session as usize,
            max_sessions_per_namespace: args.max_sessions_per_namespace as usize,
        },
    };
    match eventspan::operator::run::run(options, stop_token(None)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventspan run: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Cancelled on Ctrl-C, SIGTERM, or after `limit`.
fn stop_token(limit: Option<Duration>) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let deadline = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            _ = term.recv() => tracing::info!("terminated"),
            _ = deadline => {}
        }
        stop.cancel();
    });
    token
}

async fn run_record(args: RecordArgs) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("eventspan record: no usable cluster credentials: {e}");
            return ExitCode::from(2);
        }
    };
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("eventspan record: cannot create {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let scopes = if args.namespaces.is_empty() {
        vec![Scope::AllNamespaces]
    } else {
        args.namespaces.into_iter().map(Scope::Namespace).collect()
    };
    match record::record(client, scopes, out, stop_token(args.duration)).await {
        Ok(stats) => {
            for r in &stats.refused {
                tracing::warn!(resource = %r.resource, scope = ?r.scope, code = r.code, "given up: not permitted to watch");
            }
            tracing::info!(
                lines = stats.lines,
                events = stats.events,
                kinds = stats.kinds,
                kinds_rejected = stats.kinds_rejected,
                refused = stats.refused.len(),
                "recording finished"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventspan record: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_watch(args: WatchArgs) -> ExitCode {
    use std::io::IsTerminal;
    let target = args.target.clone();
    let options = eventspan::live::Options {
        target: args.target,
        namespace: args.namespace,
        timeout: (!args.timeout.is_zero()).then_some(args.timeout),
        kubeconfig: args.kubeconfig,
        context: args.context,
    };
    let mut stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    match eventspan::live::watch(options, &mut stdout, tty, stop_token(None)).await {
        Ok(ending) => {
            // As kubectl: the success line on stdout, a failure on stderr.
            if ending.exit_code() == 0 {
                println!("{}", ending.message(&target));
            } else {
                eprintln!("{}", ending.message(&target));
            }
            ExitCode::from(ending.exit_code())
        }
        Err(e @ eventspan::live::LiveError::NotFound { .. }) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("eventspan watch: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_replay(args: ReplayArgs) -> ExitCode {
    let name = args
        .path
        .as_deref()
        .filter(|p| p.as_os_str() != "-")
        .map_or("standard input".into(), |p| p.display().to_string());
    let input: Box<dyn Read> = match args.path.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("eventspan replay: cannot read {name}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let cfg = EngineConfig {
        window: args.window,
        horizon: args.horizon,
        ..EngineConfig::default()
    };
    // Skipped input is reported as it is met, so none of it is kept.
    let mut skipped = 0usize;
    let skip = |bad: replay::input::BadInput| {
        skipped += 1;
        eprintln!(
            "eventspan replay: line {}: skipped: {}",
            bad.line, bad.reason
        );
    };
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    // The tree is for reading: it holds every span, to print traces in start order. OTLP/JSON
    // is written as traces settle, so its memory does not grow with the recording.
    let result = match args.output {
        Output::Tree => {
            let mut spans = Vec::new();
            replay::run(
                input,
                cfg,
                |_, settled| {
                    spans.append(settled);
                    Ok(())
                },
                skip,
            )
            .map(|stats| (stats, spans))
            .map_err(replay::StreamError::Read)
            .and_then(|(stats, spans)| {
                let mut stdout = stdout;
                stdout
                    .write_all(replay::tree::render(&spans).as_bytes())
                    .and_then(|()| stdout.flush())
                    .map_err(replay::StreamError::Write)?;
                Ok(stats)
            })
        }
        Output::OtlpJson => {
            replay::stream_otlp_json(input, cfg, replay::StreamedOtlpJson::new(stdout), skip)
                .map(|(stats, _)| stats)
        }
    };
    let stats = match result {
        Ok(stats) => stats,
        Err(replay::StreamError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return ExitCode::SUCCESS;
        }
        Err(replay::StreamError::Write(e)) => {
            eprintln!("eventspan replay: cannot write output: {e}");
            return ExitCode::from(2);
        }
        Err(replay::StreamError::Read(e)) => {
            eprintln!("eventspan replay: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let refused: Vec<String> = eventspan::engine::Rejection::ALL
        .iter()
        .filter_map(|&r| {
            let n = stats.rejected(r);
            (n > 0).then(|| format!("{} {n}", r.as_str()))
        })
        .collect();
    if !refused.is_empty() {
        eprintln!(
            "eventspan replay: input refused by the engine (counted, the rest used): {}",
            refused.join(", ")
        );
    }
    if skipped == 0 && refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        if skipped > 0 {
            eprintln!("eventspan replay: {skipped} input value(s) skipped");
        }
        ExitCode::from(1)
    }
}
