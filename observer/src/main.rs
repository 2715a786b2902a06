//! The observer binary. Its code is the library's (`observer::main` parses, sets up logging and
//! dispatches): with every module private there, the compiler sees what nothing uses.
#![expect(
    unused_crate_dependencies,
    reason = "the binary only calls the library, which uses them"
)]

fn main() -> std::process::ExitCode {
    observer::main()
}
