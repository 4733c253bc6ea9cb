// glibc's allocator spent a quarter of the service's CPU on small, short-lived
// allocations spread over Tokio's threads (docs/BENCHMARKS.md); mimalloc's
// per-thread pages make them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wallet::cli::main()
}
