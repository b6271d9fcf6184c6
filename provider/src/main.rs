//! terraform-provider-edge: started by Terraform, or by hand with `--debug`.

use std::process::ExitCode;

use edge_provider::plugin::{self, Mode};

const USAGE: &str = "terraform-provider-edge — the edgeform/edge Terraform provider

Usage:
  terraform-provider-edge            (started by Terraform)
  terraform-provider-edge --debug    serve for a debugger; prints TF_REATTACH_PROVIDERS
  terraform-provider-edge --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        None => Mode::Terraform,
        Some("--debug" | "-debug") => Mode::Debug,
        Some("--version" | "-version") => {
            println!("terraform-provider-edge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h" | "-help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    plugin::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(plugin::serve(mode, edge_provider::catalog::catalog())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
