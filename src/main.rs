use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = stepwise::cli::Cli::parse();
    match stepwise::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stepwise: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
