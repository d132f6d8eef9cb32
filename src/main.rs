//! The `chunkdump` command line; all logic lives in the library.

fn main() -> std::process::ExitCode {
    chunkdump::cli::main()
}
