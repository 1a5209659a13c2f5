use clap::Parser;
use sriov_rs::ctl::{self, Cli};

fn main() {
    let cli = Cli::parse();
    sriov_rs::logging::init(&cli.log_level);
    if let Err(error) = ctl::run(cli) {
        eprintln!("sriovctl: {error}");
        std::process::exit(1);
    }
}
