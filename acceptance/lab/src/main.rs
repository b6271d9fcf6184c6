//! `edge-lab`: up / down / status / coverage / serve.
fn main() -> std::process::ExitCode {
    edge_lab::cli::main()
}
