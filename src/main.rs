fn main() {
    std::process::exit(rillcast::cli::main());
}
