use std::process::ExitCode;

use clap::Parser;
use hitcounter::config::{Cli, Command};
use hitcounter::{healthcheck, server, telemetry, transfer};

fn main() -> ExitCode {
    limit_malloc_arenas();
    // Before clap reads the environment, while this is the only thread.
    if let Err(error) = hitcounter::config::resolve_secret_files() {
        eprintln!("hitcounter: {error}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "hitcounter: {}",
                hitcounter::telemetry::describe_error(&error)
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => {
            telemetry::init(&args.log)?;
            let shutdown = server::shutdown_signal()?;
            let listener = tokio::net::TcpListener::bind(args.listen_addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen_addr))?;
            let unwritten = server::serve(&args, listener, shutdown).await?;
            Ok(if unwritten == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Migrate(args) => {
            telemetry::init(&args.log)?;
            let store = server::open_store(&args.store)?;
            store.migrate().await?;
            tracing::info!(store = %store.describe(), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => transfer_export(args).await,
        Command::Import(args) => transfer_import(args).await,
        Command::Healthcheck(args) => {
            match healthcheck::probe(&args.target(), args.timeout).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

// --- Export and import (`hitcounter::transfer`). ---
/// The store for a batch job: each statement may take 30 s.
fn transfer_store(
    args: &hitcounter::config::StoreArgs,
) -> anyhow::Result<hitcounter::store::Store> {
    let mut args = args.clone();
    args.store_timeout = args.store_timeout.max(std::time::Duration::from_secs(30));
    Ok(server::open_store(&args)?)
}

async fn transfer_export(args: hitcounter::config::ExportArgs) -> anyhow::Result<ExitCode> {
    if args.store.database_url.is_none() && !args.store.sqlite_path.exists() {
        anyhow::bail!(
            "SQLITE_PATH: there is no record at {} to export; name the file with SQLITE_PATH, or PostgreSQL with DATABASE_URL",
            args.store.sqlite_path.display()
        );
    }
    let store = transfer_store(&args.store)?;
    store.migrate().await?;
    let started = std::time::Instant::now();
    let exported = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let exported = transfer::export(&store, &mut out).await?;
            out.into_inner()
                .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error()))?
                .sync_all()?;
            exported
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            transfer::export(&store, &mut out).await?
        }
    };
    eprintln!(
        "exported {exported} counters from {} in {:.1} s",
        store.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn transfer_import(args: hitcounter::config::ImportArgs) -> anyhow::Result<ExitCode> {
    let store = transfer_store(&args.store)?;
    let cache = args
        .redis_url
        .as_ref()
        .filter(|_| !args.dry_run)
        .map(|url| {
            hitcounter::cache::Cache::connect_lazy(&hitcounter::cache::CacheConfig {
                url: url.clone(),
                key_prefix: args.redis_key_prefix.clone(),
                timeout: std::time::Duration::from_secs(2),
            })
        })
        .transpose()?;
    if !args.dry_run {
        store.migrate().await?;
    }
    let options = transfer::ImportOptions {
        format: args.format,
        on_conflict: args.on_conflict,
        batch: args.batch_size as usize,
        dry_run: args.dry_run,
    };
    let started = std::time::Instant::now();
    let done = if args.file.as_os_str() == "-" {
        transfer::import(&store, cache.as_ref(), std::io::stdin().lock(), options).await?
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?;
        let input = std::io::BufReader::with_capacity(1 << 16, file);
        transfer::import(&store, cache.as_ref(), input, options).await?
    };
    let verb = if args.dry_run { "checked" } else { "imported" };
    eprintln!(
        "{verb} {} counters into {} in {:.1} s ({} read, {} already there and skipped)",
        done.written,
        store.describe(),
        started.elapsed().as_secs_f64(),
        done.read,
        done.skipped
    );
    if let Some(error) = done.cache_error {
        eprintln!(
            "warning: Redis was not brought up to date ({error}); the record holds the imported values, and each counter's next hit corrects its cache entry"
        );
    }
    Ok(ExitCode::SUCCESS)
}
// --- End of export and import. ---

/// One malloc arena instead of glibc's default of up to eight per core.
///
/// Every worker thread otherwise gets its own arena, and memory freed in one
/// is not reused by the others: with 256 open connections an app grew to
/// 32-36 MB, with one arena 28 MB, at the same throughput (bench, c=256;
/// at c=64 15-16 MB and 14-15 MB). Small allocations stay per thread in
/// glibc's tcache either way. `MALLOC_ARENA_MAX`, when set, still decides.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists or anything has been allocated from a second arena.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
