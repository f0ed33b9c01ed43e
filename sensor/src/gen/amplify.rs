//! placeholder, being written
#[derive(clap::Args, Debug)]
pub struct AmplifyArgs {
    #[arg(long)]
    pub out: std::path::PathBuf,
}
pub fn run(args: &AmplifyArgs) -> anyhow::Result<String> {
    Ok(format!("{:?}", args))
}
