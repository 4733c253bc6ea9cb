fn main() -> std::process::ExitCode {
    wallet::cli::main()
}
