//! The `kubectl` binary: parses the command line and exits as stock kubectl does (0 on
//! success, 1 with `error: ...` or `Error from server (...)` on stderr otherwise).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = match kubectl::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let _ = e.print();
            std::process::exit(1);
        }
    };
    match kubectl::run(cli).await {
        Ok(()) => {}
        Err(kubectl::client::Error::Exit(code)) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
