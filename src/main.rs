//! The `eventspan` command line.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use eventspan::engine::EngineConfig;
use eventspan::replay;

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
    /// used, 1 when some was skipped (each skip is reported on stderr with its line), 2 on errors.
    Replay(ReplayArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => run_replay(args),
    }
}

fn run_replay(args: ReplayArgs) -> ExitCode {
    let mut input = String::new();
    let read = match args.path.as_deref() {
        None => std::io::stdin().read_to_string(&mut input),
        Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_string(&mut input),
        Some(p) => std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut input)),
    };
    if let Err(e) = read {
        let name = args
            .path
            .as_deref()
            .map_or("standard input".into(), |p| p.display().to_string());
        eprintln!("eventspan replay: cannot read {name}: {e}");
        return ExitCode::from(2);
    }
    let cfg = EngineConfig {
        window: args.window,
        horizon: args.horizon,
        ..EngineConfig::default()
    };
    let result = replay::replay(&input, cfg);
    let rendered = match args.output {
        Output::Tree => replay::tree::render(&result.spans),
        Output::OtlpJson => replay::otlp_json_lines(&result.spans),
    };
    if let Err(e) = std::io::stdout().lock().write_all(rendered.as_bytes())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("eventspan replay: cannot write output: {e}");
        return ExitCode::from(2);
    }
    for bad in &result.skipped {
        eprintln!(
            "eventspan replay: line {}: skipped: {}",
            bad.line, bad.reason
        );
    }
    if result.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "eventspan replay: {} input value(s) skipped",
            result.skipped.len()
        );
        ExitCode::from(1)
    }
}
